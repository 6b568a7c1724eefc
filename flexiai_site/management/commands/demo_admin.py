"""Make sure the demo has a superuser and print its login (password kept in var/)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo superuser 'admin' once and print its login."

    def handle(self, *args: Any, **options: Any) -> None:
        path = settings.VAR_DIR / "demo-admin-password"
        User = get_user_model()
        user = User.objects.filter(username="admin").first()
        if user is None or not path.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                User.objects.create_superuser("admin", "admin@example.com", password)
            else:
                user.set_password(password)
                user.save()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(password)
            path.chmod(0o600)
        self.stdout.write(f"admin login: admin / {path.read_text().strip()}")
