package deploy

// What the Kubernetes manifests must agree with, read from the shop's own
// source rather than restated here: the flags and environment variables of
// cmd/shop, the routes of web/routes.go and the timing of a replica's stop.
// A renamed flag, a moved probe route or a longer shutdown then fails
// TestKubernetes* until the manifests follow.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shopFlag is one flag of cmd/shop and the environment variable behind it.
type shopFlag struct {
	Name, Env, Default string
}

// shopSource is what cmd/shop says about itself.
type shopSource struct {
	Flags []shopFlag
	// Env is every SHOP_* name the program mentions: the variables it reads.
	Env map[string]bool
	// QuietMax and ShutdownTimeout bound the stop after the drain (see
	// cmd/shop/drain.go): the wait for idle connections, then Shutdown.
	QuietMax, ShutdownTimeout time.Duration
}

func (s shopSource) flagByEnv(env string) (shopFlag, bool) {
	for _, f := range s.Flags {
		if f.Env == env {
			return f, true
		}
	}
	return shopFlag{}, false
}

var shopEnvName = regexp.MustCompile(`^SHOP_[A-Z0-9_]+$`)

// flagDefiners maps flag.FlagSet's defining methods to the index of their
// name argument.
var flagDefiners = map[string]int{
	"String": 0, "StringVar": 1, "Bool": 0, "BoolVar": 1, "Int": 0, "IntVar": 1,
	"Int64": 0, "Int64Var": 1, "Uint": 0, "UintVar": 1, "Float64": 0, "Float64Var": 1,
	"Duration": 0, "DurationVar": 1, "Func": 0, "BoolFunc": 0, "TextVar": 1, "Var": 1,
}

// parseGoFiles parses the non-test Go files of dir.
func parseGoFiles(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

func goStringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// readShopSource reads cmd/shop: its flags (fs.StringVar(&v, "name",
// env("SHOP_NAME", "default"), ...) and the like), every SHOP_* name it
// mentions, and the bounds of its stop.
func readShopSource(t *testing.T) shopSource {
	t.Helper()
	files := parseGoFiles(t, filepath.Join("..", "cmd", "shop"))
	src := shopSource{Env: make(map[string]bool)}
	consts := make(map[string]ast.Expr)
	var run *ast.FuncDecl
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				if d.Tok != token.CONST {
					continue
				}
				for _, spec := range d.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							consts[name.Name] = vs.Values[i]
						}
					}
				}
			case *ast.FuncDecl:
				if d.Name.Name == "run" && d.Recv == nil {
					run = d
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, ok := goStringLit(n); ok && shopEnvName.MatchString(s) {
					src.Env[s] = true
				}
			case *ast.CallExpr:
				if fl, ok := flagDefinition(n); ok {
					src.Flags = append(src.Flags, fl)
				}
			}
			return true
		})
	}

	q, ok := consts["quietMax"]
	if !ok {
		t.Fatal("cmd/shop: no const quietMax (drain.go) any more: the stop's timing changed; re-derive terminationGracePeriodSeconds in deploy/kubernetes/base/shop.yaml and this test")
	}
	var err error
	if src.QuietMax, err = evalDuration(q, consts); err != nil {
		t.Fatalf("cmd/shop: quietMax: %v", err)
	}
	if run == nil {
		t.Fatal("cmd/shop: no func run")
	}
	if src.ShutdownTimeout, err = shutdownTimeout(run, consts); err != nil {
		t.Fatalf("cmd/shop: %v; re-derive terminationGracePeriodSeconds in deploy/kubernetes/base/shop.yaml and this test", err)
	}
	return src
}

// flagDefinition recognises fs.XxxVar(&v, "name", env("SHOP_NAME", "def"), "usage").
func flagDefinition(call *ast.CallExpr) (shopFlag, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return shopFlag{}, false
	}
	i, ok := flagDefiners[sel.Sel.Name]
	if !ok || i >= len(call.Args) {
		return shopFlag{}, false
	}
	name, ok := goStringLit(call.Args[i])
	if !ok {
		return shopFlag{}, false
	}
	fl := shopFlag{Name: name}
	for _, arg := range call.Args[i+1:] {
		inner, ok := arg.(*ast.CallExpr)
		if !ok || len(inner.Args) == 0 {
			continue
		}
		if env, ok := goStringLit(inner.Args[0]); ok && shopEnvName.MatchString(env) {
			fl.Env = env
			if len(inner.Args) > 1 {
				fl.Default, _ = goStringLit(inner.Args[1])
			}
			break
		}
	}
	return fl, true
}

// shutdownTimeout finds `x.Shutdown(ctx)` in run and the
// context.WithTimeout that made ctx, and evaluates its duration.
func shutdownTimeout(run *ast.FuncDecl, consts map[string]ast.Expr) (time.Duration, error) {
	var ctxName string
	ast.Inspect(run.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Shutdown" && len(call.Args) == 1 {
			if id, ok := call.Args[0].(*ast.Ident); ok {
				ctxName = id.Name
			}
		}
		return true
	})
	if ctxName == "" {
		return 0, fmt.Errorf("run calls no Shutdown(ctx)")
	}
	var timeout ast.Expr
	ast.Inspect(run.Body, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Lhs) == 0 || len(as.Rhs) != 1 {
			return true
		}
		if id, ok := as.Lhs[0].(*ast.Ident); !ok || id.Name != ctxName {
			return true
		}
		call, ok := as.Rhs[0].(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "WithTimeout" {
			timeout = call.Args[1]
		}
		return true
	})
	if timeout == nil {
		return 0, fmt.Errorf("the context given to Shutdown does not come from context.WithTimeout in run")
	}
	return evalDuration(timeout, consts)
}

var goTimeUnits = map[string]time.Duration{
	"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond, "Millisecond": time.Millisecond,
	"Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
}

// evalDuration evaluates a constant duration expression such as
// 2 * time.Second or 250*time.Millisecond, through package constants.
func evalDuration(e ast.Expr, consts map[string]ast.Expr) (time.Duration, error) {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return evalDuration(e.X, consts)
	case *ast.BasicLit:
		if e.Kind != token.INT {
			return 0, fmt.Errorf("not an integer: %s", e.Value)
		}
		n, err := strconv.ParseInt(e.Value, 0, 64)
		return time.Duration(n), err
	case *ast.SelectorExpr:
		if pkg, ok := e.X.(*ast.Ident); ok && pkg.Name == "time" {
			if u, ok := goTimeUnits[e.Sel.Name]; ok {
				return u, nil
			}
		}
	case *ast.Ident:
		if c, ok := consts[e.Name]; ok {
			return evalDuration(c, consts)
		}
	case *ast.CallExpr: // time.Duration(n)
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Duration" && len(e.Args) == 1 {
			return evalDuration(e.Args[0], consts)
		}
	case *ast.BinaryExpr:
		x, err := evalDuration(e.X, consts)
		if err != nil {
			return 0, err
		}
		y, err := evalDuration(e.Y, consts)
		if err != nil {
			return 0, err
		}
		switch e.Op {
		case token.MUL:
			return x * y, nil
		case token.ADD:
			return x + y, nil
		case token.SUB:
			return x - y, nil
		}
	}
	return 0, fmt.Errorf("cannot evaluate %T as a constant duration", e)
}

// shopRoute is one pattern of web/routes.go: "GET /readyz" is GET, "/readyz".
type shopRoute struct {
	Method, Path string
}

// readShopRoutes reads every mux.Handle / HandleFunc pattern in web/routes.go.
func readShopRoutes(t *testing.T) []shopRoute {
	t.Helper()
	var routes []shopRoute
	for _, f := range parseGoFiles(t, filepath.Join("..", "web")) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc" {
				return true
			}
			pattern, ok := goStringLit(call.Args[0])
			if !ok {
				return true
			}
			method, path, found := strings.Cut(pattern, " ")
			if !found {
				method, path = "", pattern
			}
			routes = append(routes, shopRoute{Method: method, Path: path})
			return true
		})
	}
	return routes
}

// servesGet reports whether a plain GET of path reaches its own route: an
// exact pattern, not the catch-all 404 or a wildcard.
func servesGet(routes []shopRoute, path string) bool {
	for _, r := range routes {
		if (r.Method == "GET" || r.Method == "") && r.Path == path {
			return true
		}
	}
	return false
}
