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
