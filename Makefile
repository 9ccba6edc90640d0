.PHONY: run test setup bench

run:    ## set everything up and run the pipeline on the embedded defaults
	./devtools/run.sh

test:   ## run the whole test suite (what .ci/run runs)
	./devtools/test.sh

setup:  ## install and migrate only
	./devtools/setup.sh

bench:  ## throughput and latency figures on this machine (README: Benchmarks)
	./devtools/setup.sh
	.venv/bin/python bench/track_throughput.py
	.venv/bin/python bench/api_ratio.py
	.venv/bin/python bench/workflow_throughput.py
	.venv/bin/python bench/logging_cost.py
