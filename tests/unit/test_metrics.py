"""The metrics registry on its own: gauges read from their sources at scrape time, bounded
labels, model ids only when asked, a failing source not failing the scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from launcher.observe.metrics import MAX_TENANTS, Metrics, Sources


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_gauges_come_from_their_sources_at_scrape_time() -> None:
    load = [(2, 5)]
    sources = Sources(
        load=lambda: load[0],
        warm_sessions=lambda: 3,
        gpus_in_use=lambda: 1,
        layers=lambda: {"seccomp": "on", "netns": "off: not permitted"},
        stored_bytes=lambda: {"a": 10, "b": 20},
    )
    metrics = Metrics(sources)
    got = samples(metrics)
    assert got[("launcher_jobs_running", ())] == 2
    assert got[("launcher_jobs_queued", ())] == 5
    assert got[("launcher_warm_sessions", ())] == 3
    assert got[("launcher_workers", ())] == 5
    assert got[("launcher_gpus_in_use", ())] == 1
    assert got[("launcher_sandbox_layer", (("layer", "seccomp"),))] == 1
    assert got[("launcher_sandbox_layer", (("layer", "netns"),))] == 0
    assert got[("launcher_stored_bytes", (("tenant", "b"),))] == 20
    load[0] = (0, 0)
    assert samples(metrics)[("launcher_jobs_queued", ())] == 0


def test_job_counters_and_histograms_with_and_without_model_labels() -> None:
    plain, per_model = Metrics(), Metrics(per_model=True)
    for metrics in (plain, per_model):
        metrics.job_ended("success", "temporary", "m1", {"createState": 0.01}, 0.02, 100)
        metrics.job_ended("exception", "persistent", "m2", {}, 0.5, 0)
    got = samples(plain)
    assert got[("launcher_jobs_total", (("launcher", "temporary"), ("outcome", "success")))] == 1
    assert not any(("model", "m1") in labels for _, labels in got)
    assert got[("launcher_persisted_bytes_total", ())] == 100
    count = (
        "launcher_phase_duration_seconds_count",
        (("launcher", "temporary"), ("phase", "createState")),
    )
    assert got[count] == 1
    assert got[("launcher_job_duration_seconds_count", (("launcher", "persistent"),))] == 1
    labelled = samples(per_model)
    key = (("launcher", "persistent"), ("model", "m2"), ("outcome", "exception"))
    assert labelled[("launcher_jobs_total", key)] == 1


def test_a_failing_source_and_many_tenants_keep_the_scrape_bounded() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("database gone")

    assert ("launcher_jobs_running", ()) in samples(Metrics(Sources(stored_bytes=broken)))
    many = Metrics(Sources(stored_bytes=lambda: {f"t{i}": i for i in range(3 * MAX_TENANTS)}))
    tenants = [k for k in samples(many) if k[0] == "launcher_stored_bytes"]
    assert len(tenants) == MAX_TENANTS
