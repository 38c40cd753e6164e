package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	base, max := 100*time.Millisecond, time.Second
	tests := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0, 0},
		{0, 0.5, 50 * time.Millisecond},
		{1, 0.5, 100 * time.Millisecond},
		{2, 0.999, 399600 * time.Microsecond},
		{3, 0.5, 400 * time.Millisecond},
		{4, 0.5, 500 * time.Millisecond}, // capped at max
		{60, 0.5, 500 * time.Millisecond},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, Delay(tc.attempt, base, max, tc.r), "attempt %d r %v", tc.attempt, tc.r)
	}
	assert.Zero(t, Delay(3, 0, max, 0.5))
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"99999999", 24 * time.Hour, true},
		{"Fri, 27 Nov 2026 12:00:05 GMT", 5 * time.Second, true},
		{"Fri, 27 Nov 2026 11:59:00 GMT", 0, true},
		{"Friday, 27-Nov-26 12:00:10 GMT", 10 * time.Second, true},
	}
	for _, tc := range tests {
		got, ok := RetryAfter(tc.in, now)
		assert.Equal(t, tc.ok, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}
