package tcpcopy_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/rewrite"
)

// These lab tests hold the session engine (issue 4) against the real Linux
// TCP stack as the target: in each, the target server's own count of
// requests (and bytes received) equals the online server's times the copy
// factor, or the difference is exactly explained by named counters.

// parallel runs f(i) for i in [0, n) on k goroutines.
func parallel(n, k int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func TestCopyLargeResponses(t *testing.T) {
	l := newCopyLab(t, labOptions{})
	hc := l.httpClient(true)
	for i := range 3 {
		l.get(hc, fmt.Sprintf("/big/%d", 3<<20+i))
		l.get(hc, fmt.Sprintf("/small/%d", i))
	}
	hc.CloseIdleConnections()
	l.waitCopied(1)
}

func TestCopyUploads(t *testing.T) {
	l := newCopyLab(t, labOptions{})
	hc := l.httpClient(true)
	for i := range 3 {
		l.do(hc, "POST", fmt.Sprintf("/upload/%d", i), 4<<20)
	}
	hc.CloseIdleConnections()
	l.waitCopied(1)
	deadline := time.Now().Add(10 * time.Second)
	for l.targetSrv.received.Load() < l.onlineSrv.received.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got, want := l.targetSrv.received.Load(), l.onlineSrv.received.Load(); got != want || want != 3*4<<20 {
		t.Errorf("target received %d body bytes, online %d", got, want)
	}
}

func TestCopySlowTarget(t *testing.T) {
	l := newCopyLab(t, labOptions{slow: true})
	hc := l.httpClient(true)
	for i := range 5 {
		l.get(hc, fmt.Sprintf("/slow/%d", 300+i)) // the online server answers at once
	}
	hc.CloseIdleConnections()
	l.waitCopied(1)
	if st := l.stats(); st.Held == 0 {
		t.Errorf("no request was held for the slow target: %+v", st)
	}
}

func TestCopyTargetClosesMidSession(t *testing.T) {
	// The target answers /close/ with Connection: close; the online server
	// keeps the connection, so the client's next requests find the target
	// gone and the session must reconnect.
	l := newCopyLab(t, labOptions{closer: true})
	hc := l.httpClient(true)
	for i := range 5 {
		l.get(hc, fmt.Sprintf("/close/%d", i))
	}
	hc.CloseIdleConnections()
	l.waitCopied(1)
	if st := l.stats(); st.Resumed < 4 {
		t.Errorf("want 4 resumed sessions: %+v", st)
	}
}

func TestCopyStartedMidConnection(t *testing.T) {
	l := newCopyLab(t, labOptions{noCopier: true})
	hc := l.httpClient(true)
	l.get(hc, "/before/1")
	l.get(hc, "/before/2")
	l.startCopier()
	time.Sleep(200 * time.Millisecond) // the copier's socket is open
	for i := range 3 {
		l.get(hc, fmt.Sprintf("/after/%d", i))
	}
	got := l.waitTarget(3)
	want := []string{"GET /after/0", "GET /after/1", "GET /after/2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("target handled %q, want %q", got, want)
	}
	if st := l.stats(); st.Forged != 1 {
		t.Errorf("want one forged session: %+v", st)
	}
}

func TestCopyThreeCopies(t *testing.T) {
	copies, err := rewrite.NewCopies(&rewrite.CopiesConfig{Copies: 3})
	if err != nil {
		t.Fatal(err)
	}
	l := newCopyLab(t, labOptions{copies: copies})
	hc := l.httpClient(true)
	parallel(4, 4, func(c int) {
		for r := range 5 {
			l.get(hc, fmt.Sprintf("/copies/%d/%d", c, r))
		}
	})
	hc.CloseIdleConnections()
	short := l.httpClient(false)
	for i := range 10 {
		l.get(short, fmt.Sprintf("/copies/short/%d", i))
	}
	l.waitCopied(3)
}

func TestCopySampling(t *testing.T) {
	sampler, err := rewrite.NewSampler(&rewrite.SamplerConfig{Percent: 30})
	if err != nil {
		t.Fatal(err)
	}
	l := newCopyLab(t, labOptions{rewriters: []rewrite.Rewriter{sampler}})
	hc := l.httpClient(false)
	const n = 2000
	parallel(n, 8, func(i int) { l.get(hc, fmt.Sprintf("/sample/%d", i)) })
	st := l.stats()
	got := l.waitTarget(int(st.Started))
	share := float64(len(got)) / n
	t.Logf("sampled %d of %d connections (%.1f%%)", len(got), n, 100*share)
	if share < 0.25 || share > 0.35 {
		t.Errorf("sampled %.1f%% of connections, want 30%% within 5 points", 100*share)
	}
	if st := l.stats(); uint64(len(got)) != st.Started {
		t.Errorf("target handled %d requests, sessions started %d", len(got), st.Started)
	}
}

func TestCopyIPv6(t *testing.T) {
	l := newCopyLab(t, labOptions{ipv6: true})
	hc := l.httpClient(true)
	for i := range 10 {
		l.get(hc, fmt.Sprintf("/v6/keepalive/%d", i))
	}
	hc.CloseIdleConnections()
	short := l.httpClient(false)
	for i := range 10 {
		l.get(short, fmt.Sprintf("/v6/short/%d", i))
	}
	l.waitCopied(1)
}

// TestCopyShortConnectionsPortReuse makes short connections from one
// client address with 64 ephemeral ports, closed with an RST (SO_LINGER 0)
// so no TIME-WAIT holds a port: each port comes back many times while the
// copy of its previous connection may still be under way, closing or
// lingering. The new connection must wait its turn or retire the old
// session, never be dropped; and the RST must not overtake the request.
func TestCopyShortConnectionsPortReuse(t *testing.T) {
	l := newCopyLab(t, labOptions{})
	l.client.Sysctl("net.ipv4.ip_local_port_range", "40000 40063")
	hc := l.httpClientLinger(false, 0)
	const n = 1000
	parallel(n, 8, func(i int) { l.get(hc, fmt.Sprintf("/reuse/%d", i)) })
	l.waitCopied(1)
	st := l.stats()
	t.Logf("connections that waited for their port: %d, sessions retired: %d", st.PortWaits, st.Retired)
	if st.Started != n {
		t.Errorf("started %d sessions for %d connections: %+v", st.Started, n, st)
	}
}

// TestCopyPipelinedRequests: a keep-alive client that pipelines requests
// (several in one segment, and more before the first answer) is copied
// request for request.
func TestCopyPipelinedRequests(t *testing.T) {
	l := newCopyLab(t, labOptions{})
	c := l.client.Dial("tcp4", l.onlineAddr)
	req := func(i int) string {
		return fmt.Sprintf("GET /pipe/%d HTTP/1.1\r\nHost: lab\r\n\r\n", i)
	}
	if _, err := io.WriteString(c, req(0)+req(1)+req(2)); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 6; i++ {
		if _, err := io.WriteString(c, req(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for i := range 6 {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != responseBody(fmt.Sprintf("/pipe/%d", i)) {
			t.Fatalf("answer %d disturbed: %v", i, err)
		}
	}
	c.Close()
	l.waitCopied(1)
}
