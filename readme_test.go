package m2m_test

// The README's Go code compiles as written.
//
// TestREADMECompiles extracts every ```go block of README.md and builds it
// with go build and go vet. The README's convention is that a block is a
// Go source file with its package clause left out; the test adds
// "package readme" (a block that starts with a package clause keeps its
// own). Nothing else is completed: the imports, declarations and error
// checks are the README's, and a block that needs something from outside
// (an id, a handler) takes it as a parameter. A block that is not meant
// to compile must not be fenced as go.
//
// Each block is its own package in a temporary module that requires the
// SDK, replaced by this checkout. A block that imports a package of a
// nested module of this repository (a directory below the root with its
// own go.mod, such as an integration that pulls a heavy dependency) is
// built in that nested module's context instead: the temporary module
// takes the nested module's requirements, go.sum and replace directives,
// and replaces the nested module by its directory. A block may import
// packages of at most one nested module, and every import outside the
// standard library and this repository must be a requirement of the
// module whose context it is built in. Nothing is downloaded: the build
// runs with GOPROXY=off and GOFLAGS=-mod=readonly.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct {
	line int    // README line of the block's first line of code
	lang string // the fence's info string: "go", "sh", …
	code string // the code, its fence's indentation removed
}

var (
	fenceOpen  = regexp.MustCompile("^([ \t]*)```([A-Za-z0-9_-]*)[ \t]*$")
	fenceClose = regexp.MustCompile("^[ \t]*```[ \t]*$")
)

// readmeBlocks returns the fenced code blocks of a markdown file.
func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var blocks []readmeBlock
	var cur *readmeBlock
	indent := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil:
			if m := fenceOpen.FindStringSubmatch(line); m != nil {
				cur, indent = &readmeBlock{line: n + 1, lang: m[2]}, m[1]
			}
		case fenceClose.MatchString(line):
			blocks = append(blocks, *cur)
			cur = nil
		default:
			cur.code += strings.TrimPrefix(line, indent) + "\n"
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "README.md: a code block is not closed")
	return blocks
}

// goModule is what `go mod edit -json` says of a go.mod.
type goModule struct {
	Module  struct{ Path string }
	Go      string
	Require []struct{ Path, Version string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
	dir string // absolute directory of the go.mod
}

// repoModules returns every module of the repository, the root first.
func repoModules(t *testing.T, goBin, root string) []goModule {
	t.Helper()
	var mods []goModule
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.Name() != "go.mod" || d.IsDir() {
			return nil
		}
		out, err := exec.Command(goBin, "mod", "edit", "-json", path).Output()
		if err != nil {
			return fmt.Errorf("go mod edit -json %s: %w", path, err)
		}
		var m goModule
		if err := json.Unmarshal(out, &m); err != nil {
			return err
		}
		m.dir = filepath.Dir(path)
		mods = append(mods, m)
		return nil
	})
	require.NoError(t, err)
	slices.SortFunc(mods, func(a, b goModule) int { return len(a.dir) - len(b.dir) })
	require.NotEmpty(t, mods)
	require.Equal(t, root, mods[0].dir)
	return mods
}

// contextOf returns the module a block is built in: the nested module of
// the repository whose packages it imports, else the root.
func contextOf(mods []goModule, imports []string) (goModule, error) {
	var nested []goModule
	for _, imp := range imports {
		best := -1
		for i, m := range mods {
			if (imp == m.Module.Path || strings.HasPrefix(imp, m.Module.Path+"/")) && (best < 0 || len(m.Module.Path) > len(mods[best].Module.Path)) {
				best = i
			}
		}
		if best > 0 && !slices.ContainsFunc(nested, func(m goModule) bool { return m.dir == mods[best].dir }) {
			nested = append(nested, mods[best])
		}
	}
	switch len(nested) {
	case 0:
		return mods[0], nil
	case 1:
		return nested[0], nil
	}
	return goModule{}, fmt.Errorf("imports packages of %d nested modules (%s and %s); a block may use one", len(nested), nested[0].Module.Path, nested[1].Module.Path)
}

// writeModule writes a temporary module that builds code in the context
// of m: m's requirements and go.sum, m replaced by its directory.
func writeModule(t *testing.T, dir string, m goModule) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "module readme.test\n\ngo %s\n\nrequire %s v0.0.0-00010101000000-000000000000\n", m.Go, m.Module.Path)
	for _, r := range m.Require {
		fmt.Fprintf(&b, "require %s %s\n", r.Path, r.Version)
	}
	fmt.Fprintf(&b, "\nreplace %s => %s\n", m.Module.Path, strconv.Quote(m.dir))
	for _, r := range m.Replace {
		old := r.Old.Path
		if r.Old.Version != "" {
			old += " " + r.Old.Version
		}
		target := r.New.Path + " " + r.New.Version // a module
		if r.New.Version == "" {                   // a directory
			if !filepath.IsAbs(r.New.Path) {
				r.New.Path = filepath.Join(m.dir, r.New.Path)
			}
			target = strconv.Quote(r.New.Path)
		}
		fmt.Fprintf(&b, "replace %s => %s\n", old, target)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644))
	sum, err := os.ReadFile(filepath.Join(m.dir, "go.sum"))
	if err == nil {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	}
}

func TestREADMECompiles(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	root, err := filepath.Abs(".")
	require.NoError(t, err)
	mods := repoModules(t, goBin, root)

	type build struct {
		mod    goModule
		blocks []readmeBlock
	}
	builds := map[string]*build{} // by the context module's directory
	count := 0
	for _, b := range readmeBlocks(t, "README.md") {
		if b.lang != "go" {
			continue
		}
		count++
		src := source(b)
		f, err := parser.ParseFile(token.NewFileSet(), "README.md", src, parser.ImportsOnly)
		if !assert.NoError(t, err, "README.md:%d: the block does not parse", b.line) {
			continue
		}
		var imports []string
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imports = append(imports, p)
		}
		m, err := contextOf(mods, imports)
		if !assert.NoError(t, err, "README.md:%d", b.line) {
			continue
		}
		if builds[m.dir] == nil {
			builds[m.dir] = &build{mod: m}
		}
		builds[m.dir].blocks = append(builds[m.dir].blocks, b)
	}
	require.Positive(t, count, "README.md has no go blocks")

	for _, bd := range builds {
		rel, _ := filepath.Rel(root, bd.mod.dir)
		t.Run("module "+rel, func(t *testing.T) { buildBlocks(t, goBin, bd.mod, bd.blocks) })
	}
}

// buildBlocks builds blocks, each as a package, in the context of m.
func buildBlocks(t *testing.T, goBin string, m goModule, blocks []readmeBlock) {
	t.Helper()
	dir := t.TempDir()
	writeModule(t, dir, m)
	for i, b := range blocks {
		pkg := filepath.Join(dir, fmt.Sprintf("block%02d", i+1))
		require.NoError(t, os.Mkdir(pkg, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(pkg, "readme.go"), []byte(source(b)), 0o644))
	}
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local")
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "go %s of the README's go blocks (errors give README lines):\n%s", strings.Join(args, " "), out)
	}
}

// A block that imports a nested module is built with that module's
// requirements and replace directives; one that imports two is refused.
func TestREADMEBuildContext(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	root, err := filepath.Abs(".")
	require.NoError(t, err)
	mods := repoModules(t, goBin, root)

	t.Run("context", func(t *testing.T) {
		nested := []goModule{mods[0], {dir: "/r/ext"}, {dir: "/r/ext/deeper"}, {dir: "/r/other"}}
		nested[1].Module.Path = "github.com/m2mauth/m2m/ext"
		nested[2].Module.Path = "github.com/m2mauth/m2m/ext/deeper"
		nested[3].Module.Path = "github.com/m2mauth/m2m/other"
		cases := []struct {
			name    string
			imports []string
			dir     string
		}{
			{"standard library only", []string{"net/http"}, root},
			{"the SDK", []string{"github.com/m2mauth/m2m", "github.com/m2mauth/m2m/verify"}, root},
			{"a nested module", []string{"github.com/m2mauth/m2m", "github.com/m2mauth/m2m/ext/sub"}, "/r/ext"},
			{"the longest module path wins", []string{"github.com/m2mauth/m2m/ext/deeper/pkg"}, "/r/ext/deeper"},
			{"a path that only shares a prefix", []string{"github.com/m2mauth/m2m/extra"}, root},
			{"two nested modules", []string{"github.com/m2mauth/m2m/ext", "github.com/m2mauth/m2m/other"}, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				m, err := contextOf(nested, tc.imports)
				if tc.dir == "" {
					assert.ErrorContains(t, err, "a block may use one")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, tc.dir, m.dir)
			})
		}
	})

	// A nested module of its own, outside the checkout, that depends on
	// the SDK and on golang.org/x/sync: a block importing it builds in
	// its context.
	t.Run("build", func(t *testing.T) {
		ext := t.TempDir()
		rootMod := mods[0]
		var gomod strings.Builder
		fmt.Fprintf(&gomod, "module github.com/m2mauth/m2m/ext\n\ngo %s\n\nrequire github.com/m2mauth/m2m v0.0.0-00010101000000-000000000000\n", rootMod.Go)
		for _, r := range rootMod.Require {
			fmt.Fprintf(&gomod, "require %s %s\n", r.Path, r.Version)
		}
		fmt.Fprintf(&gomod, "\nreplace github.com/m2mauth/m2m => %s\n", strconv.Quote(root))
		require.NoError(t, os.WriteFile(filepath.Join(ext, "go.mod"), []byte(gomod.String()), 0o644))
		sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(ext, "go.sum"), sum, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(ext, "ext.go"), []byte(`package ext

import "golang.org/x/sync/errgroup"

// Group returns a new errgroup.Group.
func Group() *errgroup.Group { return new(errgroup.Group) }
`), 0o644))
		out, err := exec.Command(goBin, "mod", "edit", "-json", filepath.Join(ext, "go.mod")).Output()
		require.NoError(t, err)
		var m goModule
		require.NoError(t, json.Unmarshal(out, &m))
		m.dir = ext
		buildBlocks(t, goBin, m, []readmeBlock{{line: 1, lang: "go", code: `import (
	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/ext"
)

func wait() error {
	g := ext.Group()
	g.Go(func() error { return m2m.ErrClosed })
	return g.Wait()
}
`}})
	})

	t.Run("relative replace", func(t *testing.T) {
		dir := t.TempDir()
		var m goModule
		m.Module.Path, m.Go, m.dir = "github.com/m2mauth/m2m/ext", "1.26", "/r/ext"
		m.Replace = make([]struct {
			Old struct{ Path, Version string }
			New struct{ Path, Version string }
		}, 2)
		m.Replace[0].Old.Path, m.Replace[0].New.Path = "github.com/m2mauth/m2m", "../"
		m.Replace[1].Old.Path, m.Replace[1].New.Path, m.Replace[1].New.Version = "example.com/a", "example.com/b", "v1.0.0"
		writeModule(t, dir, m)
		out, err := exec.Command(goBin, "mod", "edit", "-json", filepath.Join(dir, "go.mod")).Output()
		require.NoError(t, err, "the written go.mod parses")
		var got goModule
		require.NoError(t, json.Unmarshal(out, &got))
		replaces := map[string]string{}
		for _, r := range got.Replace {
			replaces[r.Old.Path] = strings.TrimSpace(r.New.Path + " " + r.New.Version)
		}
		assert.Equal(t, map[string]string{
			"github.com/m2mauth/m2m/ext": "/r/ext",
			"github.com/m2mauth/m2m":     "/r",
			"example.com/a":              "example.com/b v1.0.0",
		}, replaces)
	})
}

// source is a block as a Go file: the package clause the README leaves
// out, then a line directive so that errors name README lines.
func source(b readmeBlock) string {
	directive := fmt.Sprintf("//line README.md:%d\n", b.line)
	if regexp.MustCompile(`(?m)^package \w+`).MatchString(b.code) {
		return directive + b.code
	}
	return "package readme\n\n" + directive + b.code
}

// The README names the Go version go.mod requires (major and minor; the
// go directive is meant to carry no patch pin, since a patch release
// changes no language or library API).
func TestREADMEGoVersion(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(?:\.\d+)?$`).FindSubmatch(mod)
	require.NotNil(t, m, "go.mod has a go directive")
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	assert.Contains(t, string(readme), fmt.Sprintf("Go %s or later", m[1]))
}
