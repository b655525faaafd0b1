from services.common.config import CommonSettings
from services.common.topics import (ALERTS, AUDIT, CLAIMS, CLAIMS_ADJUDICATED, DISPENSES, FOREVER, PRESCRIPTIONS,
                                    TEN_YEARS_MS, platform_topics)


def test_every_event_topic_and_its_dead_letter_topic_is_declared():
    names = {t.name for t in platform_topics(CommonSettings.from_env({}))}
    main = {PRESCRIPTIONS, DISPENSES, CLAIMS, CLAIMS_ADJUDICATED, ALERTS}
    assert names == main | {f"{t}.dlq" for t in main} | {AUDIT}


def test_event_topics_keep_everything_for_replays_and_follow_the_cluster_settings():
    settings = CommonSettings.from_env({"EPRX_TOPIC_PARTITIONS": "12", "EPRX_REPLICATION_FACTOR": "3",
                                        "EPRX_MIN_INSYNC_REPLICAS": "2"})
    specs = platform_topics(settings)
    assert {"rx.prescriptions.v1", "rx.claims.v1", "rx.claims.v1.dlq"} <= {spec.name for spec in specs}
    for spec in specs:
        assert (spec.partitions, spec.replication_factor) == (12, 3)
        assert spec.configs()["min.insync.replicas"] == "2"
        if spec.name == AUDIT:
            assert spec.retention_ms == TEN_YEARS_MS    # the audit trail: ten years, stated in the README
        elif not spec.name.endswith(".dlq"):
            assert spec.retention_ms == FOREVER
