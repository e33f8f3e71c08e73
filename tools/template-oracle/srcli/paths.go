// Package template holds the one src-cli type whose Go type name appears in user-visible
// error messages (`template.fileMatchPathList`), so the oracle prints the same name.
package template

import "strings"

type fileMatchPathList []string

func (f fileMatchPathList) String() string { return strings.Join(f, " ") }

// NewPathList returns paths typed as src-cli's fileMatchPathList.
func NewPathList(paths []string) any { return fileMatchPathList(paths) }
