"""``python -m flexiai_django.testing.fake_upstream``: serve in the foreground until Ctrl-C."""

from flexiai_django.testing.fake_upstream.cli import main

raise SystemExit(main())
