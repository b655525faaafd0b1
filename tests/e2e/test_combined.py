"""One process per service (EPRX_PROCESSES=combined, services/common/combined.py): the story
through three processes instead of nine, one /metrics per process with all its parts' series,
and a process stopped or killed in the middle of sales, nothing lost or doubled."""
from eprescription.events.v1 import events_pb2

from demo.story import Story
from tests.e2e.test_story import metrics_of
from tests.support.sales import SalesUnderFaults
from tests.support import wait_until


def test_the_story_on_one_process_per_service(combined_system):
    assert sorted(combined_system.procs) == ["fhir", "insurance", "pharmacy", "prescribing"]
    results = Story(combined_system.settings, out=lambda line: None).run()
    assert results["third_sale"] == "FAILED_PRECONDITION" and results["old_code"] == "FAILED_PRECONDITION"
    assert set(results["claims"].values()) == {events_pb2.CLAIM_OUTCOME_APPROVED}
    assert results["alert"]
    # Each process's one /metrics carries its server's, its relay's and its worker's series.
    for service, rpc in (("prescribing", "IssuePrescription"), ("pharmacy", "DispensePrescription"),
                         ("insurance", "QuoteCoverage")):
        def complete(service=service, rpc=rpc):
            text = metrics_of(combined_system.metrics_ports[service])
            return text if "eprx_consumer_lag_messages{" in text else None
        text = wait_until(complete, timeout=60, interval=1, message=f"{service}'s worker series")
        assert f'grpc_method="{rpc}"' in text and 'grpc_code="OK"' in text, service
        assert f'eprx_outbox_depth_entries{{service="{service}",shard="0"}}' in text, service


def test_a_process_stopped_or_killed_in_the_middle_loses_and_doubles_nothing(combined_system):
    system = combined_system
    sales = SalesUnderFaults(system.settings)
    sales.sell(0)
    # A graceful stop ends cleanly (exit 0), and what it acknowledged is on Kafka without the
    # process being started again (its relay stops after its server and ships what is left).
    assert system.stop("pharmacy") == 0
    wait_until(sales.shipped(1), timeout=20, interval=0.5, message="the first sale shipped by the stopped process")
    system.start("pharmacy")
    sales.sell(1)
    system.kill("insurance")        # SIGKILL: its server, relay and worker at once
    system.start("insurance")
    system.kill("prescribing")
    system.start("prescribing")
    sales.sell(2)
    sales.assert_each_once(3)       # shipped, adjudicated and counted by prescribing, each once
