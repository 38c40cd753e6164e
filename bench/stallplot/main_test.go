package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/plotter"
)

const sample = `# loadgen: 2 workers, one request each per 10ms, for 1s per variant; tokens live 2s; token endpoint latency 200ms
variant,start_s,latency_s
m2m,0.001,2e-06
m2m,0.5,3e-06
x-oauth2 (tuned),0.002,4e-06
x-oauth2 (tuned),0.41,0.2
x-oauth2 (tuned),0.9,5e-06
`

func TestReadSeries(t *testing.T) {
	t.Parallel()
	s, err := readSeries(strings.NewReader(sample))
	require.NoError(t, err)
	assert.Equal(t, "loadgen: 2 workers, one request each per 10ms, for 1s per variant; tokens live 2s; token endpoint latency 200ms", s.about)
	assert.Equal(t, []string{"m2m", "x-oauth2 (tuned)"}, s.variants)
	assert.Equal(t, []request{{0.001, 2e-6}, {0.5, 3e-6}}, s.requests["m2m"])
	assert.Len(t, s.requests["x-oauth2 (tuned)"], 3)

	cases := []struct{ name, in, msg string }{
		{"empty", "", "no header"},
		{"wrong header", "a,b,c\n", "want variant,start_s,latency_s"},
		{"no rows", "variant,start_s,latency_s\n", "no requests"},
		{"not a number", "variant,start_s,latency_s\nm2m,x,1\n", `line 2: want two non-negative numbers, got "x" and "1"`},
		{"negative", "variant,start_s,latency_s\nm2m,1,-1\n", "non-negative"},
		{"two fields", "variant,start_s,latency_s\nm2m,1\n", "wrong number of fields"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := readSeries(strings.NewReader(tc.in))
			assert.ErrorContains(t, err, tc.msg)
		})
	}
}

// A wait covers every window it overlaps, so a stall is drawn as long as
// it lasted; windows nobody waited in are left out.
func TestSlowest(t *testing.T) {
	t.Parallel()
	reqs := []request{{0.005, 1e-6}, {0.012, 3e-6}, {0.015, 2e-6}, {0.041, 0.025}, {0.9, 5}}
	got := slowest(reqs, 0.01, 0.1)
	assert.Equal(t, plotter.XYs{
		{X: 0.005, Y: 1e-6},
		{X: 0.015, Y: 3e-6},                                              // the slowest of the window
		{X: 0.045, Y: 0.025}, {X: 0.055, Y: 0.025}, {X: 0.065, Y: 0.025}, // 41 ms to 66 ms
	}, got, "windows past the end are left out")
	assert.Equal(t, plotter.XYs{{X: 0.005, Y: floor}}, slowest([]request{{0.001, 0}}, 0.01, 0.01), "a zero wait is drawn at the floor")
}

func TestDraw(t *testing.T) {
	t.Parallel()
	s, err := readSeries(strings.NewReader(sample))
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, draw1(&buf, s, 10*time.Millisecond))
	svg := buf.String()
	assert.True(t, strings.HasPrefix(svg, "<?xml"), "an SVG document")
	assert.Contains(t, svg, "<svg")
	for _, want := range []string{"m2m", "x/oauth2 (tuned)", "100ms", "1µs", "Time to get a token", "tokens live 2s"} {
		assert.Contains(t, svg, want)
	}
	assert.Error(t, draw1(&buf, s, 0))

	dir := t.TempDir()
	in, out := filepath.Join(dir, "series.csv"), filepath.Join(dir, "stalls.svg")
	require.NoError(t, os.WriteFile(in, []byte(sample), 0o644))
	require.NoError(t, run(in, out, 20*time.Millisecond))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Contains(t, string(b), "</svg>")
	assert.ErrorContains(t, run("", out, time.Millisecond), "-in is required")
	assert.Error(t, run(filepath.Join(dir, "missing.csv"), out, time.Millisecond))
}

func TestWrap(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "aa bb\ncc", wrap("aa bb cc", 5))
	assert.Equal(t, "toolongword\nx", wrap("toolongword x", 5))
	assert.Equal(t, "", wrap("", 5))
}

func TestDurationTicks(t *testing.T) {
	t.Parallel()
	var labels []string
	for _, tk := range (durationTicks{top: 10}).Ticks(1e-7, 500) {
		labels = append(labels, tk.Label)
	}
	assert.Equal(t, []string{"100ns", "1µs", "10µs", "100µs", "1ms", "10ms", "100ms", "1s", "10s"}, labels)
}
