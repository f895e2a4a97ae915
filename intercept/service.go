package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPort is the port intercept listens on, TCPCopy's 36524.
const DefaultPort = 36524

// ServiceConfig configures a Service: the intercept of the classic pair as
// one unit. At most one of NFQueue, AFPacket and Interceptor is set; none
// means NFQueue with its defaults.
type ServiceConfig struct {
	// NFQueue selects the NFQUEUE interceptor (the classic deployment,
	// intercept on the target) with these settings: queue number and
	// length (-q), fail-open, pass list (-x).
	NFQueue *NFQueueConfig
	// AFPacket selects the AF_PACKET interceptor (the assistant and
	// two-box deployments) with these settings: interfaces (-i) and the
	// target service's ports (-F).
	AFPacket *AFPacketConfig
	// Interceptor, if set, is used as it is (a harness's Memory, say);
	// Rules must then be nil.
	Interceptor Interceptor

	// Rules, if set, makes Run install these NFQUEUE rules (see
	// NFQueueRules) before it starts intercepting and remove them when it
	// returns, whatever ends it: ctx cancelled (by SIGINT or SIGTERM in a
	// program), a failure, or a panic unwinding through Run. Its Queue is
	// replaced by NFQueue's. Only with the NFQueue interceptor. Zero: the
	// rules are the administrator's business.
	Rules *NFQueueRulesConfig

	// Listen is the address copiers connect to (intercept's -b and -p).
	// Zero: ":36524", every address.
	Listen string
	// Listener, if set, is served instead of listening on Listen. The
	// Service closes it.
	Listener net.Listener

	// Server configures the Server: Secret, TLS, AcceptClassic,
	// ClassicPayload, PayloadLimit, RouteTTL (-t) and the rest. Its
	// Interceptor and Logger are set by the Service.
	Server ServerConfig

	// Clock reads the time for Uptime. Zero: time.Now.
	Clock func() time.Time
	// Logger receives lifecycle events, and is given to the Server,
	// interceptor and rules. Zero: discard.
	Logger *slog.Logger
}

// Service runs an Interceptor and a Server on one listener, and installs
// and removes the NFQUEUE rules when asked: what the intercept program
// does between its flags and its exit. It is safe for concurrent use; Run
// runs once.
type Service struct {
	cfg   ServiceConfig
	log   *slog.Logger
	clock func() time.Time

	ic    Interceptor
	nfq   *NFQueue
	afp   *AFPacket
	rules *NFQueueRules
	srv   *Server

	queue   uint16 // the NFQUEUE number
	running atomic.Bool
	started atomic.Int64 // Unix nanoseconds
	rulesUp atomic.Int64 // rules installed now
	mu      sync.Mutex
	addr    net.Addr
	ready   chan struct{}
}

// ServiceStats is everything a Service counts.
type ServiceStats struct {
	Uptime time.Duration
	// Rules is the number of iptables rules installed now.
	Rules int
	// Server counts the copier connections, routes and responses.
	Server ServerStats
	// NFQueue or AFPacket counts what the interceptor saw; the other is
	// zero.
	NFQueue  NFQueueStats
	AFPacket AFPacketStats
}

// NewService checks cfg and builds the interceptor, rules and Server. It
// opens nothing and starts nothing; Run does.
func NewService(cfg *ServiceConfig) (*Service, error) {
	if cfg == nil {
		cfg = &ServiceConfig{}
	}
	s := &Service{cfg: *cfg, log: cfg.Logger, clock: cfg.Clock, ready: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	n := 0
	for _, set := range []bool{cfg.NFQueue != nil, cfg.AFPacket != nil, cfg.Interceptor != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("intercept: ServiceConfig sets more than one of NFQueue, AFPacket and Interceptor")
	}
	var err error
	switch {
	case cfg.Interceptor != nil:
		s.ic = cfg.Interceptor
	case cfg.AFPacket != nil:
		c := *cfg.AFPacket
		if c.Logger == nil {
			c.Logger = s.log
		}
		if s.afp, err = NewAFPacket(&c); err != nil {
			return nil, err
		}
		s.ic = s.afp
	default:
		var c NFQueueConfig
		if cfg.NFQueue != nil {
			c = *cfg.NFQueue
		}
		s.queue = c.Queue
		if c.Logger == nil {
			c.Logger = s.log
		}
		if s.nfq, err = NewNFQueue(&c); err != nil {
			return nil, err
		}
		s.ic = s.nfq
	}
	if cfg.Rules != nil {
		if s.nfq == nil {
			return nil, errors.New("intercept: ServiceConfig.Rules needs the NFQueue interceptor")
		}
		rc := *cfg.Rules
		rc.Queue = s.queue
		if rc.Logger == nil {
			rc.Logger = s.log
		}
		if s.rules, err = NewNFQueueRules(&rc); err != nil {
			return nil, err
		}
	}
	if s.cfg.Listen == "" {
		s.cfg.Listen = fmt.Sprintf(":%d", DefaultPort)
	}
	sc := cfg.Server
	sc.Interceptor = s.ic
	if sc.Logger == nil {
		sc.Logger = s.log
	}
	if s.srv, err = NewServer(&sc); err != nil {
		return nil, err
	}
	return s, nil
}

// Run installs the rules (if configured), opens the interceptor, listens
// and serves copiers until ctx ends (it returns nil) or something fails.
// Before it returns it stops the Server and the interceptor and removes
// the rules it installed; a failure to remove them is part of its error.
func (s *Service) Run(ctx context.Context) (err error) {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("intercept: Service.Run called twice")
	}
	s.started.Store(s.clock().UnixNano())
	ln := s.cfg.Listener
	defer func() {
		if ln != nil {
			ln.Close()
		}
	}()
	if s.rules != nil {
		if err := s.rules.Install(); err != nil {
			return err
		}
		s.rulesUp.Store(int64(len(s.rules.Specs())))
		s.log.Info("intercept: rules installed", "rules", len(s.rules.Specs()))
		defer func() {
			rerr := s.rules.Remove()
			s.rulesUp.Store(0)
			if rerr != nil {
				err = errors.Join(err, rerr)
				return
			}
			s.log.Info("intercept: rules removed")
		}()
	}
	switch {
	case s.nfq != nil:
		if err := s.nfq.Open(); err != nil {
			return err
		}
		defer s.nfq.Close()
	case s.afp != nil:
		if err := s.afp.Open(); err != nil {
			return err
		}
		defer s.afp.Close()
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("intercept: listen on %s: %w", s.cfg.Listen, err)
		}
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("ready", "listen", ln.Addr().String(), "interceptor", s.interceptorName())
	serveLn := ln
	ln = nil // Serve closes it
	return s.srv.Serve(ctx, serveLn)
}

func (s *Service) interceptorName() string {
	switch {
	case s.nfq != nil:
		return fmt.Sprintf("nfqueue %d", s.queue)
	case s.afp != nil:
		return fmt.Sprintf("af_packet %q ports %v", s.cfg.AFPacket.Interfaces, s.cfg.AFPacket.Ports)
	}
	return fmt.Sprintf("%T", s.ic)
}

// Addr returns the address the Service listens on, or nil before Run has
// opened it.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Ready is closed once Run listens and intercepts.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Stats returns a snapshot of the counters.
func (s *Service) Stats() ServiceStats {
	st := ServiceStats{Server: s.srv.Stats()}
	if t := s.started.Load(); t != 0 {
		st.Uptime = s.clock().Sub(time.Unix(0, t))
	}
	if s.nfq != nil {
		st.NFQueue = s.nfq.Stats()
	}
	if s.afp != nil {
		st.AFPacket = s.afp.Stats()
	}
	st.Rules = int(s.rulesUp.Load())
	return st
}
