"""WSGI entry point, served by gunicorn."""

import logging
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracardi_site.settings")
application = get_wsgi_application()

# The API ships its warnings and errors to the console's log page; its INFO lines (one per
# request at most) stay on stdout, where they would cost the log table the most.
from console.logs.handler import start_shipping  # noqa: E402  (needs the settings loaded above)

start_shipping("api", level=logging.WARNING)
