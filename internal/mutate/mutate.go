// Package mutate is the repository's mutation tester: it makes small
// changes (mutants) to a package's code, one at a time, runs the package's
// tests against each, and reports which mutants the tests noticed (killed)
// and which they did not (survived). A survivor is a line whose behaviour
// no test pins down.
//
// Mutants are found on the syntax tree (go/ast), so each is a text edit at
// a node's position that leaves the file parseable; the changed file is
// given to `go test -overlay`, so the source tree is never written.
// Operators: comparison boundaries and negations, && and || swapped, a
// negated if condition, an error return replaced by nil, an integer
// constant moved by one, a statement of an if body deleted.
//
// A mutant that cannot change behaviour (an equivalent mutant) is marked
// in the source by a comment on its line or the line above:
//
//	// mutate:equivalent OP reason
//
// where OP is an operator name (see Operators) or * for all of them on
// that line; the reason is required. Equivalent mutants are listed, not
// run, and not counted in the score.
//
// It uses only the standard library and the go command.
package mutate

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strconv"
	"strings"
)

// Operator names.
const (
	OpBoundary   = "boundary"    // < ↔ <=, > ↔ >=
	OpNegateCmp  = "negate-cmp"  // == ↔ !=
	OpBool       = "bool"        // && ↔ ||
	OpNegateIf   = "negate-if"   // if c → if !(c)
	OpErrReturn  = "err-return"  // return …, err → return …, nil
	OpConst      = "const"       // integer literal n → n+1, n-1
	OpDeleteStmt = "delete-stmt" // a statement of an if body removed
)

// Operators lists the operator names.
var Operators = []string{OpBoundary, OpNegateCmp, OpBool, OpNegateIf, OpErrReturn, OpConst, OpDeleteStmt}

// Edit replaces the bytes [Start, End) of a file with Text.
type Edit struct {
	Start, End int
	Text       string
}

// Mutant is one small change to one file.
type Mutant struct {
	File   string // path as given to Find
	Line   int
	Op     string
	Desc   string // what changes, e.g. "< → <="
	Edits  []Edit // in increasing order, not overlapping
	Equiv  bool   // marked equivalent in the source
	Reason string // the mark's reason
	src    []byte // the file as read when the mutant was found (run.go)
}

// String is "file:line: op: desc".
func (m Mutant) String() string { return fmt.Sprintf("%s:%d: %s: %s", m.File, m.Line, m.Op, m.Desc) }

// Apply returns src with m's edits made.
func (m Mutant) Apply(src []byte) []byte {
	var b strings.Builder
	last := 0
	for _, e := range m.Edits {
		b.Write(src[last:e.Start])
		b.WriteString(e.Text)
		last = e.End
	}
	b.Write(src[last:])
	return []byte(b.String())
}

// Find returns the mutants of one Go source file, in source order.
func Find(file string, src []byte) ([]Mutant, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	marks := equivalentMarks(fset, f, src)
	var out []Mutant
	tf := fset.File(f.Pos())
	off := func(p token.Pos) int { return tf.Offset(p) }
	add := func(pos token.Pos, op, desc string, edits ...Edit) {
		line := fset.Position(pos).Line
		m := Mutant{File: file, Line: line, Op: op, Desc: desc, Edits: edits}
		if r, ok := marks[markKey{line, op}]; ok {
			m.Equiv, m.Reason = true, r
		} else if r, ok := marks[markKey{line, "*"}]; ok {
			m.Equiv, m.Reason = true, r
		}
		out = append(out, m)
	}
	text := func(n ast.Node) string { return string(src[off(n.Pos()):off(n.End())]) }

	// errFuncs: the function bodies whose last result is an error.
	var stack []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return false
		}
		stack = append(stack, n)
		switch n := n.(type) {
		case *ast.GenDecl:
			if n.Tok == token.IMPORT {
				stack = stack[:len(stack)-1]
				return false
			}
		case *ast.BinaryExpr:
			op := n.Op.String()
			p := off(n.OpPos)
			swap := func(kind, to string) {
				add(n.OpPos, kind, op+" → "+to, Edit{p, p + len(op), to})
			}
			switch n.Op {
			case token.LSS:
				swap(OpBoundary, "<=")
			case token.LEQ:
				swap(OpBoundary, "<")
			case token.GTR:
				swap(OpBoundary, ">=")
			case token.GEQ:
				swap(OpBoundary, ">")
			case token.EQL:
				swap(OpNegateCmp, "!=")
			case token.NEQ:
				swap(OpNegateCmp, "==")
			case token.LAND:
				swap(OpBool, "||")
			case token.LOR:
				swap(OpBool, "&&")
			}
		case *ast.IfStmt:
			add(n.Cond.Pos(), OpNegateIf, "if "+short(text(n.Cond))+" → if !(…)",
				Edit{off(n.Cond.Pos()), off(n.Cond.Pos()), "!("}, Edit{off(n.Cond.End()), off(n.Cond.End()), ")"})
			for _, st := range n.Body.List {
				if _, ok := st.(*ast.DeclStmt); ok {
					continue
				}
				add(st.Pos(), OpDeleteStmt, "delete "+short(text(st)), Edit{off(st.Pos()), off(st.End()), ""})
			}
		case *ast.ReturnStmt:
			if len(n.Results) > 0 && returnsError(stack) {
				last := n.Results[len(n.Results)-1]
				if id, ok := last.(*ast.Ident); !ok || id.Name != "nil" {
					add(last.Pos(), OpErrReturn, "return "+short(text(last))+" → nil", Edit{off(last.Pos()), off(last.End()), "nil"})
				}
			}
		case *ast.BasicLit:
			if n.Kind == token.INT && !inArrayType(stack) {
				v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
				if err == nil {
					p := off(n.Pos())
					for _, d := range []int64{1, -1} {
						w := v + d
						if w < 0 {
							continue
						}
						add(n.Pos(), OpConst, fmt.Sprintf("%s → %d", n.Value, w), Edit{p, p + len(n.Value), strconv.FormatInt(w, 10)})
					}
				}
			}
		}
		return true
	})
	for i := range out {
		sort.Slice(out[i].Edits, func(a, b int) bool { return out[i].Edits[a].Start < out[i].Edits[b].Start })
	}
	return out, nil
}

// returnsError reports whether the innermost function on the stack has an
// error as its last result.
func returnsError(stack []ast.Node) bool {
	for i := len(stack) - 1; i >= 0; i-- {
		var ft *ast.FuncType
		switch n := stack[i].(type) {
		case *ast.FuncDecl:
			ft = n.Type
		case *ast.FuncLit:
			ft = n.Type
		default:
			continue
		}
		if ft.Results == nil || len(ft.Results.List) == 0 {
			return false
		}
		id, ok := ft.Results.List[len(ft.Results.List)-1].Type.(*ast.Ident)
		return ok && id.Name == "error"
	}
	return false
}

// inArrayType reports whether the literal is an array length (changing
// it would rarely compile, and never says anything about behaviour).
func inArrayType(stack []ast.Node) bool {
	for i := len(stack) - 2; i >= 0; i-- {
		switch stack[i].(type) {
		case *ast.ArrayType:
			return true
		case ast.Stmt, *ast.FuncDecl, *ast.FuncLit:
			return false
		}
	}
	return false
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 50 {
		s = s[:47] + "…"
	}
	return s
}

type markKey struct {
	line int
	op   string
}

// equivalentMarks reads the "mutate:equivalent OP reason" comments: one
// after code marks its own line, one alone on its line marks the next.
func equivalentMarks(fset *token.FileSet, f *ast.File, src []byte) map[markKey]string {
	marks := map[markKey]string{}
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			t := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(c.Text, "//"), "/*"))
			rest, ok := strings.CutPrefix(t, "mutate:equivalent")
			if !ok {
				continue
			}
			fields := strings.Fields(rest)
			if len(fields) < 2 {
				continue // a mark needs an operator and a reason
			}
			pos := fset.Position(c.Pos())
			line := pos.Line
			if strings.TrimSpace(string(src[pos.Offset-pos.Column+1:pos.Offset])) == "" {
				line++ // alone on its line: marks the next
			}
			for _, op := range strings.Split(fields[0], ",") {
				marks[markKey{line, op}] = strings.Join(fields[1:], " ")
			}
		}
	}
	return marks
}
