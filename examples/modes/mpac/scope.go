package mpac

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Limits of a scope.
const (
	MaxScopePaths = 64
	MaxPathBytes  = 1024
)

// CleanScope checks the paths of a scope and returns them sorted, the form
// the state keeps. It leaves paths alone.
func CleanScope(paths []string) ([]string, error) {
	if err := checkScope(paths); err != nil {
		return nil, err
	}
	out := append([]string(nil), paths...)
	if err := sortScope(out); err != nil {
		return nil, err
	}
	return out, nil
}

// cleanScope is CleanScope sorting paths in place.
func cleanScope(paths []string) error {
	if err := checkScope(paths); err != nil {
		return err
	}
	return sortScope(paths)
}

func checkScope(paths []string) error {
	switch {
	case len(paths) == 0:
		return errors.New("a scope needs at least one path")
	case len(paths) > MaxScopePaths:
		return fmt.Errorf("a scope has at most %d paths, got %d", MaxScopePaths, len(paths))
	}
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return err
		}
	}
	return nil
}

// sortScope sorts paths and refuses a path listed twice. A scope is usually
// a few paths, sorted by insertion without the calls of sort.Strings.
func sortScope(paths []string) error {
	if len(paths) > 8 {
		sort.Strings(paths)
	} else {
		for i := 1; i < len(paths); i++ {
			for j := i; j > 0 && paths[j] < paths[j-1]; j-- {
				paths[j], paths[j-1] = paths[j-1], paths[j]
			}
		}
	}
	for i := 1; i < len(paths); i++ {
		if paths[i] == paths[i-1] {
			return fmt.Errorf("path %q is listed twice", paths[i])
		}
	}
	return nil
}

// checkPath checks one path of a scope, in one pass over its bytes.
func checkPath(p string) error {
	if p == "" || len(p) > MaxPathBytes {
		return fmt.Errorf("path %q must have 1 to %d bytes", p, MaxPathBytes)
	}
	start := 0 // of the current segment
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		switch n := i - start; {
		case n == 0:
			return fmt.Errorf("path %q has an empty segment (leading, trailing or doubled slash)", p)
		case n <= 2 && p[start] == '.' && p[i-1] == '.':
			return fmt.Errorf("path %q has a %q segment", p, p[start:i])
		}
		start = i + 1
	}
	return nil
}

// PathsOverlap reports whether two paths are equal or one is a directory
// prefix of the other.
func PathsOverlap(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return strings.HasPrefix(b, a) && (len(a) == len(b) || b[len(a)] == '/')
}

// ScopesOverlap reports whether any path of a overlaps any path of b.
func ScopesOverlap(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if PathsOverlap(x, y) {
				return true
			}
		}
	}
	return false
}
