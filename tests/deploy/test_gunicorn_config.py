"""deploy/gunicorn.conf.py as gunicorn loads it: its own lines in the hub's format, and no access
log — the hub logs each request itself (hub.http.observability), so gunicorn builds nothing for one."""

from pathlib import Path

from gunicorn.app.base import Application
from gunicorn.glogging import Logger

ROOT = Path(__file__).resolve().parents[2]


class _Loaded(Application):
    """gunicorn's application with only the config file loaded, as `gunicorn --config` does."""

    def init(self, parser, opts, args):
        return None

    def load_config(self):
        self.load_config_from_file(str(ROOT / "deploy" / "gunicorn.conf.py"))

    def load(self):
        raise AssertionError("not served")


def test_gunicorn_builds_no_access_log_records():
    cfg = _Loaded().cfg
    assert cfg.logconfig_dict  # gunicorn's own logger takes this for a configured access log...
    assert issubclass(cfg.logger_class, Logger) and cfg.logger_class is not Logger
    # (made without __init__, which would apply logconfig_dict to this process's logging)
    log = cfg.logger_class.__new__(cfg.logger_class)
    assert log.access_log_enabled is False
    # ...and build every request's atoms: here the arguments it would read do not even exist.
    assert log.access(None, None, None, None) is None
