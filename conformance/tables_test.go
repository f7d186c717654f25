package conformance

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// table is one machine-read table of CONFORMANCE.md: its header cells and
// rows keyed by header.
type table struct {
	name   string
	header []string
	rows   []map[string]string
	lines  []int // line number of each row, for messages
}

// column returns the values of the column whose header is name, in order.
func (t *table) column(name string) []string {
	var out []string
	for _, r := range t.rows {
		out = append(out, r[name])
	}
	return out
}

// parseTables reads every markdown table preceded by a line
// "<!-- table: NAME -->". Cell values lose surrounding spaces and one pair
// of backticks.
func parseTables(text string) (map[string]*table, error) {
	tables := map[string]*table{}
	sc := bufio.NewScanner(strings.NewReader(text))
	var cur *table
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(s, "<!-- table:"); ok {
			name = strings.TrimSpace(strings.TrimSuffix(name, "-->"))
			if _, dup := tables[name]; dup {
				return nil, fmt.Errorf("line %d: table %q twice", line, name)
			}
			cur = &table{name: name}
			tables[name] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if !strings.HasPrefix(s, "|") {
			if len(cur.header) > 0 {
				cur = nil // the table ended
			}
			continue
		}
		cells := splitRow(s)
		switch {
		case cur.header == nil:
			cur.header = cells
		case isSeparator(cells):
		default:
			if len(cells) != len(cur.header) {
				return nil, fmt.Errorf("line %d: table %q: %d cells, header has %d", line, cur.name, len(cells), len(cur.header))
			}
			row := map[string]string{}
			for i, h := range cur.header {
				row[h] = cells[i]
			}
			cur.rows = append(cur.rows, row)
			cur.lines = append(cur.lines, line)
		}
	}
	return tables, sc.Err()
}

func splitRow(s string) []string {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "|"), "|")
	parts := strings.Split(s, "|")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && p[0] == '`' && p[len(p)-1] == '`' {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return parts
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return true
}

// loadStatement parses CONFORMANCE.md and returns the named tables, each
// required to exist and to have the given columns.
func loadStatement(t *testing.T, want map[string][]string) map[string]*table {
	t.Helper()
	b, err := os.ReadFile("CONFORMANCE.md")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := parseTables(string(b))
	if err != nil {
		t.Fatalf("CONFORMANCE.md: %v", err)
	}
	for name, cols := range want {
		tb, ok := tables[name]
		if !ok {
			t.Fatalf("CONFORMANCE.md has no table %q", name)
		}
		for _, c := range cols {
			if !slices.Contains(tb.header, c) {
				t.Fatalf("CONFORMANCE.md table %q has no column %q (header %q)", name, c, tb.header)
			}
		}
		if len(tb.rows) == 0 {
			t.Fatalf("CONFORMANCE.md table %q is empty", name)
		}
	}
	return tables
}

// diff reports what is in one list and not the other, both ways.
func diff(t *testing.T, what string, doc, code []string) {
	t.Helper()
	for _, s := range code {
		if !slices.Contains(doc, s) {
			t.Errorf("%s: %s is in the code but not in CONFORMANCE.md", what, s)
		}
	}
	for _, s := range doc {
		if !slices.Contains(code, s) {
			t.Errorf("%s: %s is in CONFORMANCE.md but not in the code", what, s)
		}
	}
	seen := map[string]bool{}
	for _, s := range doc {
		if seen[s] {
			t.Errorf("%s: %s is listed twice in CONFORMANCE.md", what, s)
		}
		seen[s] = true
	}
}

func TestParseTables(t *testing.T) {
	doc := "text\n<!-- table: a -->\n| X | UID |\n|---|---|\n| one | `1.2` |\n| two | 3 |\n\n| not | read |\n" +
		"<!-- table: b -->\n\n| K |\n|--|\n| v |\nafter\n"
	tables, err := parseTables(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := tables["a"].column("UID"); !slices.Equal(got, []string{"1.2", "3"}) {
		t.Errorf("a.UID = %q", got)
	}
	if got := tables["b"].column("K"); !slices.Equal(got, []string{"v"}) {
		t.Errorf("b.K = %q", got)
	}
	if _, err := parseTables("<!-- table: c -->\n| A | B |\n|--|--|\n| only one |\n"); err == nil {
		t.Error("a row with too few cells was accepted")
	}
}
