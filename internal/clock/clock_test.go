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
