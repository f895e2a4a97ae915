# The test command of the README and of .ci/run.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test check fuzz
test: check
	go test -race -count=1 -timeout 20m ./...
	# Allocation budgets, which the race detector's own allocations hide.
	go test -count=1 -run 'Alloc' ./...

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run $(STATICCHECK) ./...

# Each fuzz target for a while (FUZZTIME=60s make fuzz).
FUZZTIME ?= 30s
fuzz:
	go test -run=NONE -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./capture
	go test -run=NONE -fuzz=FuzzRewriteChecksum -fuzztime=$(FUZZTIME) ./capture

# The load harness (issue 9): the demo's lab driven flat out by wrk, with
# the cost of the copy reported per run. As root; needs wrk and nginx-light.
BENCH_DURATION ?= 10s
.PHONY: bench-e2e
bench-e2e:
	go build -o bin/demo ./examples/demo
	go build -o bin/tcpcopy ./examples/tcpcopy
	go build -o bin/intercept ./examples/intercept
	@for server in go nginx; do \
	  for args in "-connections 50" "-connections 50 -short" "-connections 50 -cpus 1" "-connections 50 -short -cpus 1"; do \
	    ./bin/demo -bin bin -load wrk -duration $(BENCH_DURATION) -server $$server $$args | grep '^bench:'; \
	  done; \
	  ./bin/demo -bin bin -load wrk -duration $(BENCH_DURATION) -server $$server -deployment nfqueue -connections 4 | grep '^bench:'; \
	done
