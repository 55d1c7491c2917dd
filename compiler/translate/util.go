package translate

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

const (
	twoSeconds = 2 * time.Second
	tenSeconds = 10 * time.Second
	oneHour    = time.Hour
)

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func (t *translator) fail(format string, a ...any) {
	t.err = errors.Join(t.err, fmt.Errorf("translate: "+format, a...))
}
