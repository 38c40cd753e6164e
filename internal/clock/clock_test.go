package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFake(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	assert.Equal(t, start, f.Now())
	c1, _ := f.NewTimer(time.Second)
	c2, stop2 := f.NewTimer(2 * time.Second)
	c0, _ := f.NewTimer(0)
	assert.Equal(t, start, <-c0, "a zero timer fires at once")
	assert.Equal(t, 2, f.Timers())
	f.Advance(time.Second)
	assert.Equal(t, start.Add(time.Second), <-c1)
	select {
	case <-c2:
		t.Fatal("fired early")
	default:
	}
	assert.True(t, stop2())
	assert.False(t, stop2())
	f.Advance(time.Hour)
	select {
	case <-c2:
		t.Fatal("a stopped timer fired")
	default:
	}
	assert.Equal(t, start.Add(time.Hour+time.Second), f.Now())
}

func TestReal(t *testing.T) {
	t.Parallel()
	var r Real
	assert.WithinDuration(t, time.Now(), r.Now(), time.Minute)
	c, stop := r.NewTimer(time.Hour)
	assert.NotNil(t, c)
	assert.True(t, stop())
}

func TestAfterFunc(t *testing.T) {
	t.Parallel()
	f := NewFake(time.Unix(0, 0))
	var fired []string
	f.AfterFunc(2*time.Second, func() { fired = append(fired, "b") })
	f.AfterFunc(time.Second, func() { fired = append(fired, "a") })
	stop := f.AfterFunc(3*time.Second, func() { fired = append(fired, "c") })
	f.AfterFunc(0, func() { fired = append(fired, "now") })
	assert.Equal(t, 0, f.Timers(), "AfterFunc timers are not NewTimer timers")
	f.Advance(2 * time.Second)
	assert.Equal(t, []string{"now", "a", "b"}, fired)
	assert.True(t, stop())
	f.Advance(time.Hour)
	assert.Equal(t, []string{"now", "a", "b"}, fired)

	done := make(chan struct{})
	Real{}.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	assert.True(t, Real{}.AfterFunc(time.Hour, func() {})())
}
