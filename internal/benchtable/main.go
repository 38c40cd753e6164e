// Command benchtable reads `go test -bench` output on stdin and prints a
// markdown table per benchmark family: the median of each variant, and its
// ratio to the x/oauth2 peer run in the same process ("m2m / peer"), or to
// a "floor" variant where there is no such peer. For
// families with a "bare" variant it also prints the overhead above it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// line matches "BenchmarkFamily/variant-2  N  12.3 ns/op  [metrics...]".
var line = regexp.MustCompile(`^Benchmark([^/\s]+)/(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

type sample map[string][]float64 // unit → values

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data := map[string]map[string]sample{} // family → variant → samples
	var families []string
	variants := map[string][]string{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		m := line.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		fam, variant := m[1], m[2]
		if data[fam] == nil {
			data[fam] = map[string]sample{}
			families = append(families, fam)
		}
		if data[fam][variant] == nil {
			data[fam][variant] = sample{}
			variants[fam] = append(variants[fam], variant)
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				data[fam][variant][f[i+1]] = append(data[fam][variant][f[i+1]], v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, fam := range families {
		units := []string{"ns/op", "B/op", "allocs/op"}
		for _, v := range variants[fam] {
			for u := range data[fam][v] {
				if !slices.Contains(units, u) {
					units = append(units, u)
				}
			}
		}
		peer := peerOf(variants[fam])
		bare := data[fam]["bare"]
		cpu := peer != "" && len(data[fam][peer]["cpu-ns/op"]) > 0
		fmt.Fprintf(out, "\n%s\n\n| variant |", fam)
		for _, u := range units {
			fmt.Fprintf(out, " %s |", u)
		}
		if peer != "" {
			fmt.Fprintf(out, " ns/op vs %s |", peer)
		}
		if cpu {
			fmt.Fprintf(out, " cpu-ns/op vs %s |", peer)
		}
		if bare != nil {
			fmt.Fprint(out, " overhead over bare | overhead vs x/oauth2's |")
			if cpu {
				fmt.Fprint(out, " cpu overhead vs x/oauth2's |")
			}
		}
		fmt.Fprint(out, "\n|---|")
		for range units {
			fmt.Fprint(out, "---:|")
		}
		if peer != "" {
			fmt.Fprint(out, "---:|")
		}
		if cpu {
			fmt.Fprint(out, "---:|")
		}
		if bare != nil {
			fmt.Fprint(out, "---:|---:|")
			if cpu {
				fmt.Fprint(out, "---:|")
			}
		}
		fmt.Fprintln(out)
		for _, v := range variants[fam] {
			s := data[fam][v]
			fmt.Fprintf(out, "| %s |", v)
			for _, u := range units {
				fmt.Fprintf(out, " %s |", format(median(s[u])))
			}
			if peer != "" {
				fmt.Fprintf(out, " %.2f× |", median(s["ns/op"])/median(data[fam][peer]["ns/op"]))
			}
			if cpu {
				fmt.Fprintf(out, " %.2f× |", median(s["cpu-ns/op"])/median(data[fam][peer]["cpu-ns/op"]))
			}
			if bare != nil {
				over := median(s["ns/op"]) - median(bare["ns/op"])
				peerOver := median(data[fam][peer]["ns/op"]) - median(bare["ns/op"])
				fmt.Fprintf(out, " %s ns | %.2f× |", format(over), over/peerOver)
				if cpu {
					cpuOver := median(s["cpu-ns/op"]) - median(bare["cpu-ns/op"])
					fmt.Fprintf(out, " %.2f× |", cpuOver/(median(data[fam][peer]["cpu-ns/op"])-median(bare["cpu-ns/op"])))
				}
			}
			fmt.Fprintln(out)
		}
	}
	return nil
}

// peerOf returns the variant the others are compared with: the x/oauth2
// peer, else a floor.
func peerOf(variants []string) string {
	for _, prefix := range []string{"x-oauth2", "floor"} {
		for _, v := range variants {
			if strings.HasPrefix(v, prefix) {
				return v
			}
		}
	}
	return ""
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
