// Command stallplot draws the refresh-stall comparison as a picture: the
// time each request waited for a token, over the run, for m2m and
// golang.org/x/oauth2, from the CSV that internal/loadgen writes with
// -series. scripts/bench.sh runs both and writes bench/refresh-stalls.svg,
// the picture BENCHMARKS.md and the README show.
//
// It is a module of its own so that the SDK's users never download the
// plotting library.
//
// Usage:
//
//	go run . -in series.csv -out ../refresh-stalls.svg
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func main() {
	in := flag.String("in", "", "CSV written by loadgen -series (required)")
	out := flag.String("out", "refresh-stalls.svg", "SVG to write")
	window := flag.Duration("window", 20*time.Millisecond, "each point is the slowest request that started in a window this long")
	flag.Parse()
	if err := run(*in, *out, *window); err != nil {
		fmt.Fprintln(os.Stderr, "stallplot:", err)
		os.Exit(1)
	}
}

func run(in, out string, window time.Duration) error {
	if in == "" {
		return errors.New("-in is required")
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	s, err := readSeries(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := draw1(w, s, window); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// series is a loadgen run: its description and each variant's requests,
// in the order the variants appear.
type series struct {
	about    string
	variants []string
	requests map[string][]request
}

// request is one request: when it started (seconds from its variant's
// start) and how long it waited for a token (seconds).
type request struct{ start, latency float64 }

// readSeries reads loadgen's CSV: an optional "# description" line, a
// header, then variant,start_s,latency_s rows.
func readSeries(r io.Reader) (*series, error) {
	s := &series{requests: map[string][]request{}}
	all, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return nil, err
	}
	text := string(all)
	if rest, ok := strings.CutPrefix(text, "# "); ok {
		s.about, text, _ = strings.Cut(rest, "\n")
		s.about = strings.TrimSpace(s.about)
	}
	cr := csv.NewReader(strings.NewReader(text))
	cr.FieldsPerRecord = 3
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("no header: %w", err)
	}
	if !slices.Equal(header, []string{"variant", "start_s", "latency_s"}) {
		return nil, fmt.Errorf("header is %q, want variant,start_s,latency_s", header)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		start, err1 := strconv.ParseFloat(rec[1], 64)
		lat, err2 := strconv.ParseFloat(rec[2], 64)
		if err := errors.Join(err1, err2); err != nil || start < 0 || lat < 0 || math.IsInf(start, 0) || math.IsInf(lat, 0) {
			line, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("line %d: want two non-negative numbers, got %q and %q", line, rec[1], rec[2])
		}
		if _, seen := s.requests[rec[0]]; !seen {
			s.variants = append(s.variants, rec[0])
		}
		s.requests[rec[0]] = append(s.requests[rec[0]], request{start, lat})
	}
	if len(s.variants) == 0 {
		return nil, errors.New("no requests")
	}
	return s, nil
}

// slowest returns, per window of [0, end), the longest wait that
// overlaps it: a request that started at s and waited d covers every
// window from s to s+d. A stall so shows as long as it lasted, not as one
// point where it began. Windows no request overlaps are left out.
func slowest(reqs []request, window, end float64) plotter.XYs {
	n := int(math.Ceil(end / window))
	worst := make([]float64, n)
	covered := make([]bool, n)
	for _, r := range reqs {
		first := int(r.start / window)
		last := min(int((r.start+r.latency)/window), n-1)
		for i := first; i <= last; i++ {
			worst[i] = max(worst[i], r.latency)
			covered[i] = true
		}
	}
	var xys plotter.XYs
	for i, w := range worst {
		if covered[i] {
			xys = append(xys, plotter.XY{X: (float64(i) + 0.5) * window, Y: max(w, floor)})
		}
	}
	return xys
}

// floor is the least latency drawn: the log scale cannot show 0.
const floor = 1e-7

// palette: Okabe-Ito colours, told apart with any colour vision, in
// loadgen's order of variants (m2m, x/oauth2 defaults, x/oauth2 tuned).
var palette = []color.RGBA{
	{0, 114, 178, 255},   // blue
	{204, 121, 167, 255}, // purple
	{213, 94, 0, 255},    // vermillion
	{0, 158, 115, 255},   // green
}

// draw1 writes the picture as SVG: one line per variant, the longest
// wait overlapping each window, on a log scale.
func draw1(w io.Writer, s *series, window time.Duration) error {
	if window <= 0 {
		return errors.New("the window must be positive")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Time to get a token: the longest wait in each %s of the run", window)
	if s.about != "" {
		p.Title.Text += "\n" + wrap(strings.TrimPrefix(s.about, "loadgen: "), 75)
	}
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "seconds since the variant started"
	p.Y.Label.Text = "time to get a token (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = durationTicks{top: 10}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Add(plotter.NewGrid())

	var end float64 // the last start: the variants' common duration
	for _, v := range s.variants {
		for _, r := range s.requests[v] {
			end = max(end, r.start)
		}
	}
	end = math.Max(end, window.Seconds())
	lines := make([]*plotter.Line, len(s.variants))
	for i, v := range s.variants {
		line, err := plotter.NewLine(slowest(s.requests[v], window.Seconds(), end))
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(1.2)
		if i == 0 {
			line.Width = vg.Points(2)
		}
		lines[i] = line
		p.Legend.Add(strings.ReplaceAll(v, "x-oauth2", "x/oauth2"), line)
	}
	for i := len(lines) - 1; i >= 0; i-- { // the first variant (m2m) on top
		p.Add(lines[i])
	}
	p.X.Min, p.X.Max = 0, end*1.02
	p.Y.Min, p.Y.Max = floor, 500 // room above the data for the legend
	wt, err := p.WriterTo(9*vg.Inch, 4.5*vg.Inch, "svg")
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(w)
	return err
}

// wrap breaks s into lines of at most n bytes, at spaces.
func wrap(s string, n int) string {
	var b strings.Builder
	width := 0
	for i, word := range strings.Fields(s) {
		switch {
		case i == 0:
		case width+1+len(word) > n:
			b.WriteByte('\n')
			width = 0
		default:
			b.WriteByte(' ')
			width++
		}
		b.WriteString(word)
		width += len(word)
	}
	return b.String()
}

// durationTicks labels a log axis of seconds in powers of ten, as
// durations ("100ns", "1µs", … "10s"), up to top seconds.
type durationTicks struct{ top float64 }

func (d durationTicks) Ticks(lo, hi float64) []plot.Tick {
	hi = min(hi, d.top)
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		v := math.Pow(10, e)
		if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
			continue
		}
		ticks = append(ticks, plot.Tick{Value: v, Label: time.Duration(v * float64(time.Second)).String()})
	}
	return ticks
}
