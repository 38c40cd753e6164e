// Package clock lets time be injected: Real in production, Fake in tests,
// so that time-driven behaviour is tested without sleeping.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and a
	// stop function that releases the timer.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
	// AfterFunc calls f in its own goroutine once d has passed, and
	// returns a function that cancels the call if it has not happened.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (Real) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// AfterFunc wraps time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Fake is a clock that moves only when Advance or Set is called. It is
// safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer // guarded by mu
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time // set for NewTimer
	fn func()         // set for AfterFunc
}

// NewFake returns a Fake clock set to now.
func NewFake(now time.Time) *Fake { return &Fake{now: now} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- f.now
		return t.ch, func() bool { return false }
	}
	f.timers = append(f.timers, t)
	return t.ch, func() bool { return f.stop(t) }
}

// AfterFunc calls fn when the fake time reaches now+d: during the Advance
// or Set that gets there, after the clock has moved, in that goroutine.
func (f *Fake) AfterFunc(d time.Duration, fn func()) func() bool {
	if d <= 0 {
		fn()
		return func() bool { return false }
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), fn: fn}
	f.timers = append(f.timers, t)
	return func() bool { return f.stop(t) }
}

func (f *Fake) stop(t *fakeTimer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.timers {
		if x == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Timers returns how many NewTimer timers are waiting to fire.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.timers {
		if t.ch != nil {
			n++
		}
	}
	return n
}

// NextTimer returns how long until the earliest NewTimer timer fires, and
// false when none waits.
func (f *Fake) NextTimer() (time.Duration, bool) { return f.next(false) }

// Next returns how long until the earliest timer of either kind fires,
// and false when none waits.
func (f *Fake) Next() (time.Duration, bool) { return f.next(true) }

func (f *Fake) next(funcs bool) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next time.Time
	for _, t := range f.timers {
		if (t.ch != nil || funcs) && (next.IsZero() || t.at.Before(next)) {
			next = t.at
		}
	}
	if next.IsZero() {
		return 0, false
	}
	return next.Sub(f.now), true
}

// Advance moves the clock forward by d and fires the timers that are due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	sort.Slice(f.timers, func(i, j int) bool { return f.timers[i].at.Before(f.timers[j].at) })
	var due []func()
	kept := f.timers[:0]
	for _, t := range f.timers {
		switch {
		case t.at.After(now):
			kept = append(kept, t)
		case t.ch != nil:
			t.ch <- now
		default:
			due = append(due, t.fn)
		}
	}
	f.timers = kept
	f.mu.Unlock()
	for _, fn := range due {
		fn()
	}
}

// Set moves the clock to t (forward only) and fires the timers that are due.
func (f *Fake) Set(t time.Time) {
	if d := t.Sub(f.Now()); d > 0 {
		f.Advance(d)
	}
}
