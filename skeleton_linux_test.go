package tcpcopy_test

import (
	"fmt"
	"sync"
	"testing"
)

func TestSkeletonKeepAlive(t *testing.T) {
	l := newCopyLab(t, labOptions{})
	hc := l.httpClient(true)
	const conns, perConn = 4, 10
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range perConn {
				l.get(hc, fmt.Sprintf("/keepalive/%d/%d", c, r))
			}
		}()
	}
	wg.Wait()
	hc.CloseIdleConnections()
	l.waitCopied(1)
	if st := l.stats(); st.Started < conns || st.HandshakeTimeouts != 0 {
		t.Errorf("session stats: %+v", st)
	}
}

func TestSkeletonShortConnections(t *testing.T) {
	l := newCopyLab(t, labOptions{})
	hc := l.httpClient(false)
	const n = 30
	for i := range n {
		l.get(hc, fmt.Sprintf("/short/%d", i))
	}
	l.waitCopied(1)
	if st := l.stats(); st.Started != n || st.HandshakeTimeouts != 0 {
		t.Errorf("session stats: %+v", st)
	}
}
