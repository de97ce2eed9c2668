"""The PostgreSQL handler with a testSecret that fails after setSecret changed the
password, as when the application's own check of the new credentials fails: keyledger
must leave AWSCURRENT on the old version."""
import importlib.util
import pathlib

_path = pathlib.Path(__file__).resolve().parents[2] / "handlers" / "postgres_single_user.py"
_spec = importlib.util.spec_from_file_location("postgres_single_user", _path)
handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(handler)


def _failing_test(service_client, arn, token):
    raise ValueError("testSecret: the application's check of the new password failed")


handler.test_secret = _failing_test
lambda_handler = handler.lambda_handler
