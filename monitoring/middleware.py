"""Request metrics (first in MIDDLEWARE, so every other middleware's time is counted) and
database query metrics (an execute wrapper on every connection this process opens)."""

import time

from django.db.backends.signals import connection_created

from . import metrics


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # The URL pattern's name, never the path: ids in paths would make a series per answer.
        view = match.view_name if match else "<unresolved>"
        metrics.http_latency.labels(view=view, method=request.method).observe(
            time.perf_counter() - started
        )
        metrics.http_responses.labels(
            status=str(response.status_code), view=view, method=request.method
        ).inc()
        return response

    def process_exception(self, request, exception):
        metrics.http_exceptions.labels(type=type(exception).__name__).inc()


def _timed(execute, sql, params, many, context):
    connection = context["connection"]
    labels = {"alias": connection.alias, "vendor": connection.vendor}
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        metrics.db_errors.labels(type=type(exc).__name__, **labels).inc()
        raise
    finally:
        metrics.db_execute.labels(**labels).inc()
        metrics.db_duration.labels(**labels).observe(time.perf_counter() - started)


def instrument_connection(sender, connection, **kwargs):
    if _timed not in connection.execute_wrappers:
        connection.execute_wrappers.append(_timed)


def connect() -> None:
    connection_created.connect(instrument_connection, dispatch_uid="monitoring.db_metrics")
