"""Builds deploy/grafana/users-v1.json, the users.v1 dashboard, with grafana-foundation-sdk.

`python deploy/grafana/dashboard.py` writes the file; `--check` fails when the committed
file differs from what this builds (make lint). Every query reads a metric of
service/metrics.py; tests/ops/test_dashboard.py runs each against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

OUTPUT = Path(__file__).with_name("users-v1.json")
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The scrape job the alert rules name too (deploy/prometheus/users-v1.rules.yaml).
JOB = 'job="$job"'
RATE = "[$__rate_interval]"
# API.md: the codes that are the server's failure, not the caller's.
FAILED = 'grpc_code=~"INTERNAL|UNAVAILABLE"'


def query(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def graph(title: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE)
    panel = panel.height(8).span(12).fill_opacity(10).line_width(1)
    for ref, target in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def build() -> model.Dashboard:
    handled = f"grpc_server_handled_total{{{JOB}}}"
    by_method = "sum by (grpc_method)"
    buckets = f"rate(grpc_server_handling_seconds_bucket{{{JOB}}}{RATE})"
    return (
        dashboard.Dashboard("users.v1")
        .uid("users-v1")
        .description("The users.v1 gRPC service: calls, database pool, change feed, process.")
        .tags(["users-v1", "grpc"])
        .refresh("30s")
        .time("now-1h", "now")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dashboard.CustomVariable("job")
            .label("Scrape job")
            .values("users-v1")
            .current(model.VariableOption(text="users-v1", value="users-v1", selected=True))
        )
        .with_row(dashboard.Row("Calls"))
        .with_panel(
            graph(
                "Calls by method",
                "reqps",
                query(f"{by_method} (rate({handled}{RATE}))", "{{grpc_method}}"),
            )
        )
        .with_panel(
            graph(
                "Failed calls (INTERNAL, UNAVAILABLE) / all calls, by method",
                "percentunit",
                query(
                    f"({by_method} (rate(grpc_server_handled_total{{{JOB},{FAILED}}}{RATE}))"
                    f" or {by_method} (rate({handled}{RATE})) * 0)"
                    f" / {by_method} (rate({handled}{RATE}))",
                    "{{grpc_method}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Errors by method and code",
                "reqps",
                query(
                    "sum by (grpc_method, grpc_code) ("
                    f'rate(grpc_server_handled_total{{{JOB},grpc_code!="OK"}}{RATE}))',
                    "{{grpc_method}} {{grpc_code}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Latency by method (p50, p99)",
                "s",
                query(
                    f"histogram_quantile(0.5, sum by (grpc_method, le) ({buckets}))",
                    "{{grpc_method}} p50",
                ),
                query(
                    f"histogram_quantile(0.99, sum by (grpc_method, le) ({buckets}))",
                    "{{grpc_method}} p99",
                ),
            )
        )
        .with_panel(
            graph(
                "Calls in flight",
                "short",
                query(f"{by_method} (grpc_server_in_flight_calls{{{JOB}}})", "{{grpc_method}}"),
            )
        )
        .with_panel(
            graph(
                "StreamUsers: users sent",
                "rowsps",
                query(f"sum(rate(users_streamed_users_total{{{JOB}}}{RATE}))", "users/s"),
            )
        )
        .with_row(dashboard.Row("Database and change feed"))
        .with_panel(
            graph(
                "Database pool",
                "short",
                query(
                    f"sum by (instance) (users_db_pool_checked_out{{{JOB}}})", "in use {{instance}}"
                ),
                query(
                    f"sum by (instance) (users_db_pool_open_connections{{{JOB}}})",
                    "open {{instance}}",
                ),
                query(
                    f"sum by (instance) (users_db_pool_capacity{{{JOB}}})", "capacity {{instance}}"
                ),
            )
        )
        .with_panel(
            graph(
                "Change feed lag (WatchUsers)",
                "s",
                query(
                    f"max by (instance) (users_change_feed_lag_seconds{{{JOB}}})", "{{instance}}"
                ),
            )
        )
        .with_panel(
            stat.Panel()
            .title("Ready (the database answers)")
            .datasource(DATASOURCE)
            .height(4)
            .span(24)
            .with_target(
                query(f"min by (instance) (users_ready{{{JOB}}})", "{{instance}}").ref_id("A")
            )
            .mappings(
                [
                    model.ValueMap(
                        options={
                            "0": model.ValueMappingResult(text="NOT_SERVING", color="red"),
                            "1": model.ValueMappingResult(text="SERVING", color="green"),
                        }
                    )
                ]
            )
        )
        .with_row(dashboard.Row("Process"))
        .with_panel(
            graph(
                "CPU",
                "percentunit",
                query(f"rate(process_cpu_seconds_total{{{JOB}}}{RATE})", "{{instance}}"),
            )
        )
        .with_panel(
            graph(
                "Resident memory",
                "bytes",
                query(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}"),
            )
        )
        .build()
    )


def render() -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            sys.stderr.write(f"{OUTPUT} is stale: run 'python {__file__}' and commit it\n")
            return 1
        sys.stdout.write(f"{OUTPUT.name} is up to date\n")
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
