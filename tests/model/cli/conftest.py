from tests.model.inference.fixtures import trained_run  # noqa: F401
