package compiler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Severity of a diagnostic: errors refuse the specs, warnings do not.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Diagnostic is one problem found in the specs, located by file and operation.
type Diagnostic struct {
	Severity  Severity `json:"severity"`
	File      string   `json:"file"`
	Line      int      `json:"line,omitempty"`      // of the key in File, where the parser gives it
	Operation string   `json:"operation,omitempty"` // "METHOD PATH" or an operationId
	Message   string   `json:"message"`
}

// String is the lint line: FILE:LINE: METHOD PATH: message.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d", d.Line)
	}
	if d.Operation != "" {
		b.WriteString(": ")
		b.WriteString(d.Operation)
	}
	b.WriteString(": ")
	if d.Severity == Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics collects every problem of a run, so one lint shows them all.
type Diagnostics []Diagnostic

// Sort orders the diagnostics by file, then line (those without a line first), keeping the
// order of the rest: the way a reader walks through the files.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Err returns the errors as one error, or nil when there are none.
func (ds Diagnostics) Err() error {
	if !ds.HasErrors() {
		return nil
	}
	var lines []string
	for _, d := range ds {
		if d.Severity == Error {
			lines = append(lines, d.String())
		}
	}
	return fmt.Errorf("%d error(s):\n%s", len(lines), strings.Join(lines, "\n"))
}

func (ds *Diagnostics) add(sev Severity, file string, line int, op, format string, a ...any) {
	*ds = append(*ds, Diagnostic{Severity: sev, File: file, Line: line, Operation: op, Message: fmt.Sprintf(format, a...)})
}

func (ds *Diagnostics) errorf(file, op, format string, a ...any) {
	ds.add(Error, file, 0, op, format, a...)
}

func (ds *Diagnostics) warnf(file, op, format string, a ...any) {
	ds.add(Warning, file, 0, op, format, a...)
}
