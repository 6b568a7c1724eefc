"""Test helpers shipped with flexiai_django: a fake upstream and pytest fixtures."""
