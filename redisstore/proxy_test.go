package redisstore

import (
	"net"
	"sync"
	"testing"
	"time"
)

// slowProxy forwards TCP connections to a backend, holding every chunk of
// data for delay in each direction: a Redis that answers slowly.
type slowProxy struct {
	ln      net.Listener
	backend string
	delay   time.Duration
	done    chan struct{}
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

func newSlowProxy(t *testing.T, backend string, delay time.Duration) *slowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{ln: ln, backend: backend, delay: delay, done: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *slowProxy) Addr() string { return p.ln.Addr().String() }

func (p *slowProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, b) {
			return
		}
		p.wg.Go(func() { p.pipe(b, c) })
		p.wg.Go(func() { p.pipe(c, b) })
	}
}

// track records c and b for close; false when the proxy is closing.
func (p *slowProxy) track(c, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		c.Close()
		b.Close()
		return false
	default:
	}
	p.conns = append(p.conns, c, b)
	return true
}

// pipe copies from src to dst, each chunk after delay, until either side
// closes or the proxy does; then it closes both.
func (p *slowProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			timer := time.NewTimer(p.delay)
			select {
			case <-timer.C:
			case <-p.done:
				timer.Stop()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *slowProxy) close() {
	p.mu.Lock()
	close(p.done)
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
