.PHONY: run test setup bench

run:    ## set everything up and run the pipeline on the embedded defaults
	./devtools/run.sh

test:   ## run the whole test suite (what .ci/run runs)
	./devtools/test.sh

setup:  ## install and migrate only
	./devtools/setup.sh

STACK ?= embedded
bench:  ## issue 13's throughput figures as one table (README: Benchmarks); STACK=real: Pulsar + Elasticsearch + MySQL
	./devtools/setup.sh
	.venv/bin/python bench/run_all.py --stack $(STACK)
