# One entry point for everything: install, generate, run, test, benchmark.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GEN := build/gen
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/local/kafka/pom.xml)
KAFKA_LIBS := .cache/kafka-$(KAFKA_VERSION)/libs
HAPI_VERSION := $(shell sed -n 's:.*<hapi.version>\(.*\)</hapi.version>.*:\1:p' deploy/local/fhir-validator/pom.xml)
FHIR_VALIDATOR_LIBS := .cache/hapi-fhir-$(HAPI_VERSION)/libs
PROTOS := $(shell find protos -name '*.proto')
SUPERVISE := $(PY) deploy/local/supervise.py
# `make test` runs on its own ports and run folder, so it never disturbs a `make run`.
TEST_ENV := EPRX_RUN_DIR=$(CURDIR)/.run/test EPRX_KAFKA_PORT=19092 EPRX_KAFKA_CONTROLLER_PORT=19093 \
            EPRX_REDIS_PORT=16380 EPRX_PRESCRIBING_PORT=21051 EPRX_PHARMACY_PORT=21052 \
            EPRX_INSURANCE_PORT=21053 EPRX_FHIR_PORT=21080 EPRX_INSURANCE_INTERNAL_PORT=21063 EPRX_LOG_FORMAT=json

.PHONY: install protos kafka-jars fhir-validator redis-bin credentials topics run up down status grpcurl toxiproxy ghz demo bench bench-recovery chaos \
        k8s-schemas k8s-validate \
        test test-unit test-integration test-redis-cluster test-clean-slate fuzz clean

install: $(VENV)/.installed protos kafka-jars redis-bin

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# Generated code and the project root are importable from the virtualenv.
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/$(GEN)" > $$site/eprescription-project.pth
	@touch $@

protos: $(GEN)/.stamp

$(GEN)/.stamp: $(PROTOS) $(VENV)/.installed
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$(GEN) --pyi_out=$(GEN) \
	  --grpc_python_out=$(GEN) $(PROTOS)
	@touch $@

kafka-jars: $(KAFKA_LIBS)/.stamp

$(KAFKA_LIBS)/.stamp: deploy/local/kafka/pom.xml
	@command -v java >/dev/null || { echo "Java 17 is required for Kafka"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch Kafka"; exit 1; }
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -Dstyle.color=never -f deploy/local/kafka/pom.xml package -Dlibs.dir=$(CURDIR)/$(KAFKA_LIBS)
	rm -rf deploy/local/kafka/target
	@touch $@

# The HAPI FHIR validator's jars, for the test that validates the facade's resources offline.
fhir-validator: $(FHIR_VALIDATOR_LIBS)/.stamp

$(FHIR_VALIDATOR_LIBS)/.stamp: deploy/local/fhir-validator/pom.xml
	@command -v java >/dev/null || { echo "Java 17 is required for the FHIR validator"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch the FHIR validator"; exit 1; }
	rm -rf $(FHIR_VALIDATOR_LIBS)
	mvn -q -B -Dstyle.color=never -f deploy/local/fhir-validator/pom.xml package -Dlibs.dir=$(CURDIR)/$(FHIR_VALIDATOR_LIBS)
	rm -rf deploy/local/fhir-validator/target
	@touch $@

redis-bin:
	@command -v redis-server >/dev/null || { \
	  echo "redis-server not found: installing Debian's package"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }

# A generic gRPC client, for calling the services through reflection (Go is on the machine).
GRPCURL := .cache/bin/grpcurl
grpcurl: $(GRPCURL)
$(GRPCURL):
	GOBIN=$(CURDIR)/.cache/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3

# Network faults for the fault runs (chaos/run.py): a TCP proxy that adds latency and resets.
TOXIPROXY := .cache/toxiproxy/bin/server
toxiproxy: $(TOXIPROXY)
$(TOXIPROXY):
	GOBIN=$(CURDIR)/.cache/toxiproxy/bin go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0

# ghz (github.com/bojand/ghz), the gRPC load tool `make bench` draws its latency curves with.
GHZ := .cache/ghz/bin/ghz
ghz: $(GHZ)
$(GHZ):
	GOBIN=$(CURDIR)/.cache/ghz/bin go install github.com/bojand/ghz/cmd/ghz@v0.120.0

# Strimzi's CRD schemas (the io.strimzi:api tests jar), for validating the Kubernetes manifests offline.
STRIMZI_VERSION := 0.49.0
STRIMZI_JAR := .cache/strimzi/api-$(STRIMZI_VERSION)-tests.jar
k8s-schemas: $(STRIMZI_JAR)
$(STRIMZI_JAR):
	mkdir -p $(dir $@)
	curl -fsSL --retry 3 -o $@.part https://repo1.maven.org/maven2/io/strimzi/api/$(STRIMZI_VERSION)/api-$(STRIMZI_VERSION)-tests.jar
	mv $@.part $@

# The image's Dockerfile linted, every overlay built and validated (also part of make test).
k8s-validate: install k8s-schemas
	$(VENV)/bin/hadolint deploy/container/Dockerfile
	$(PY) deploy/k8s/generate.py --check
	$(PY) deploy/k8s/validate.py

credentials: install
	$(PY) -m services.common.auth .run/credentials

topics: install
	$(PY) -m services.common.topics

# Foreground: everything with interleaved, named logs; Ctrl-C stops it all.
run: install
	$(SUPERVISE) run

up: install
	$(SUPERVISE) up

down:
	@test -x $(PY) && $(SUPERVISE) down || true

status:
	@$(SUPERVISE) status

# Starts its own system on other ports (.run/bench), measures, stops it. BENCH_CONCURRENCY, BENCH_SECONDS.
bench: install ghz
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) bench/run.py

# The insurance worker's recovery time from the changelog of RECOVERY_CLAIMS claims (default 1,000,000).
bench-recovery: install
	$(PY) bench/recovery.py

# Every fault in turn under a steady load, the long versions (about 35 minutes), then a Redis
# Cluster master killed under the same load; prints the fault tables and writes
# chaos/results/<stamp>.json. `make test` runs the short versions of some.
chaos: install toxiproxy
	$(PY) chaos/run.py
	$(PY) chaos/run.py --redis-cluster

# Against a running system (`make run` in another terminal, or `make up`).
demo: install
	$(PY) -m demo.story

test-unit: install k8s-schemas
	$(PY) -m pytest tests/unit -q

# Every run starts from an empty test run folder: a fresh broker, Redis and keys, so a run
# never replays or reads what an earlier run left.
test-clean-slate: install
	@$(TEST_ENV) $(SUPERVISE) down >/dev/null 2>&1 || true
	rm -rf .run/test

test-integration: test-clean-slate
	@$(TEST_ENV) $(SUPERVISE) up --infra-only
	@set +e; $(TEST_ENV) $(PY) -m pytest tests/contract tests/integration -q; rc=$$?; \
	  $(TEST_ENV) $(SUPERVISE) down; exit $$rc

test: test-clean-slate fhir-validator toxiproxy k8s-schemas
	@$(TEST_ENV) $(SUPERVISE) up --infra-only
	@set +e; $(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	  $(TEST_ENV) $(SUPERVISE) down; exit $$rc

# The suite's Redis-facing tests against a local Redis Cluster (3 masters, 3 replicas, Debian's
# redis-server): the contract suites first (they empty database 0, a cluster's only one), then
# the demo members again, then the integration and end-to-end tests.
CLUSTER_ENV := $(TEST_ENV) EPRX_REDIS_CLUSTER=1
test-redis-cluster: test-clean-slate
	@$(CLUSTER_ENV) $(SUPERVISE) up --infra-only
	@set +e; $(CLUSTER_ENV) $(PY) -m pytest tests/contract -q -p no:cacheprovider && \
	  $(CLUSTER_ENV) $(PY) -m services.insurance.import_members reference/demo/members.csv && \
	  $(CLUSTER_ENV) $(PY) -m pytest tests/integration tests/e2e -q -p no:cacheprovider \
	    --deselect tests/integration/test_redis_acls.py --deselect tests/integration/test_kafka_cluster.py; \
	  rc=$$?; $(CLUSTER_ENV) $(SUPERVISE) down; exit $$rc

# Generated requests against every RPC of the running system: 10,000 cases per RPC (FUZZ_EXAMPLES),
# then the report of answers by status code. `make test` runs 150 per RPC.
FUZZ_EXAMPLES ?= 10000
fuzz: test-clean-slate
	@$(TEST_ENV) $(SUPERVISE) up --infra-only
	@set +e; $(TEST_ENV) EPRX_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -q -s -p no:cacheprovider \
	  -o log_cli=false; rc=$$?; $(TEST_ENV) $(SUPERVISE) down; exit $$rc

clean: down
	rm -rf $(GEN) .run .pytest_cache
