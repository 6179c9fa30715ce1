// Package builtin embeds the WebAssembly modules of Concord's built-in modes
// into the binary. `make wasm` compiles each mode under modes-wasm/ into the
// modules folder before the binary is built.
package builtin

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed modules
var modules embed.FS

// Names lists the mode modules the binary was built with (file names
// without ".wasm"), in sorted order.
func Names() ([]string, error) {
	entries, err := fs.ReadDir(modules, "modules")
	if err != nil {
		return nil, fmt.Errorf("builtin: list modules: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".wasm") {
			names = append(names, strings.TrimSuffix(e.Name(), ".wasm"))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Module returns the bytes of the built-in module name.
func Module(name string) ([]byte, error) {
	b, err := modules.ReadFile(path.Join("modules", name+".wasm"))
	if err != nil {
		return nil, fmt.Errorf("builtin: module %q (run `make wasm`): %w", name, err)
	}
	return b, nil
}
