// Command template-oracle runs Go's real text/template with Sourcegraph's delimiters,
// options, helper functions and contexts (mirroring src-cli lib/batches/template), so the
// Rust crate flotilla-template can be compared against it byte for byte.
//
// Usage:
//
//	template-oracle < cases.json > results.json      # evaluate cases
//	template-oracle --record crates/template/tests/cases.json   # rewrite "expected" fields
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"

	srcli "flotilla/template-oracle/srcli"
)

type changesJSON struct {
	Modified []string `json:"modified"`
	Added    []string `json:"added"`
	Deleted  []string `json:"deleted"`
	Renamed  []string `json:"renamed"`
}

type stepResultJSON struct {
	changesJSON
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

type contextJSON struct {
	Kind        string `json:"kind"`
	BatchChange struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"batch_change"`
	Repository struct {
		Name        string   `json:"name"`
		Branch      string   `json:"branch"`
		FileMatches []string `json:"file_matches"`
	} `json:"repository"`
	Outputs      json.RawMessage `json:"outputs"`
	Data         json.RawMessage `json:"data"`
	YAMLNumbers  bool            `json:"yaml_numbers"`
	Step         stepResultJSON  `json:"step"`
	PreviousStep stepResultJSON  `json:"previous_step"`
	Steps        struct {
		changesJSON
		Path string `json:"path"`
	} `json:"steps"`
}

type caseJSON struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Mode     string          `json:"mode,omitempty"`
	Context  contextJSON     `json:"context"`
	Loose    bool            `json:"loose_error,omitempty"`
	Expected json.RawMessage `json:"expected,omitempty"`
}

type resultJSON struct {
	Output *string `json:"output,omitempty"`
	Error  *string `json:"error,omitempty"`
}

// ---- src-cli types ----

type Changes struct{ Modified, Added, Deleted, Renamed []string }
type AfterStepResult struct {
	ChangedFiles   Changes
	Stdout, Stderr string
}
type BatchChangeAttributes struct{ Name, Description string }
type Repository struct {
	Name, Branch string
	FileMatches  []string
}

func (r Repository) SearchResultPaths() any {
	paths := append([]string{}, r.FileMatches...)
	sort.Strings(paths)
	for i, p := range paths {
		paths[i] = shellJoin(p)
	}
	return srcli.NewPathList(paths)
}

type StepsContext struct {
	Changes Changes
	Path    string
}
type StepContext struct {
	BatchChange  BatchChangeAttributes
	Outputs      map[string]any
	Step         AfterStepResult
	Steps        StepsContext
	PreviousStep AfterStepResult
	Repository   Repository
}
type ChangesetTemplateContext struct {
	BatchChangeAttributes BatchChangeAttributes
	Steps                 StepsContext
	Outputs               map[string]any
	Repository            Repository
}

func shellEscapeAll(in ...string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = shellJoin(s)
	}
	return out
}

func isCanonicallyShellQuoted(s string) bool {
	parts, err := shellSplit(s)
	if err != nil || len(parts) != 1 {
		return false
	}
	return shellJoin(parts[0]) == s
}

var builtins = template.FuncMap{
	"join": strings.Join,
	"shellquote_join": func(args ...any) (string, error) {
		var flat []string
		appendOne := func(s string) {
			if isCanonicallyShellQuoted(s) {
				flat = append(flat, s)
				return
			}
			flat = append(flat, shellJoin(s))
		}
		for _, a := range args {
			switch v := a.(type) {
			case string:
				appendOne(v)
			case []string:
				for _, s := range v {
					appendOne(s)
				}
			case []any:
				for i, e := range v {
					s, ok := e.(string)
					if !ok {
						return "", fmt.Errorf("shellquote_join: element %d is %T, want string", i, e)
					}
					appendOne(s)
				}
			default:
				return "", fmt.Errorf("shellquote_join: unsupported argument type %T", a)
			}
		}
		return strings.Join(flat, " "), nil
	},
	"shellquote_split": shellSplit,
	"split":            strings.Split,
	"replace":          strings.ReplaceAll,
	"join_if": func(sep string, elems ...string) string {
		var nonBlank []string
		for _, e := range elems {
			if e != "" {
				nonBlank = append(nonBlank, e)
			}
		}
		return strings.Join(nonBlank, sep)
	},
	"matches": globMatch,
}

func (stepCtx *StepContext) ToFuncMap() template.FuncMap {
	newStepResult := func(res *AfterStepResult) map[string]any {
		return map[string]any{
			"modified_files": shellEscapeAll(res.ChangedFiles.Modified...),
			"added_files":    shellEscapeAll(res.ChangedFiles.Added...),
			"deleted_files":  shellEscapeAll(res.ChangedFiles.Deleted...),
			"renamed_files":  shellEscapeAll(res.ChangedFiles.Renamed...),
			"stdout":         res.Stdout,
			"stderr":         res.Stderr,
		}
	}
	return template.FuncMap{
		"previous_step": func() map[string]any { return newStepResult(&stepCtx.PreviousStep) },
		"step":          func() map[string]any { return newStepResult(&stepCtx.Step) },
		"steps": func() map[string]any {
			res := newStepResult(&AfterStepResult{ChangedFiles: stepCtx.Steps.Changes})
			res["path"] = stepCtx.Steps.Path
			return res
		},
		"outputs": func() map[string]any { return stepCtx.Outputs },
		"repository": func() map[string]any {
			return map[string]any{
				"search_result_paths": stepCtx.Repository.SearchResultPaths(),
				"name":                stepCtx.Repository.Name,
				"branch":              stepCtx.Repository.Branch,
			}
		},
		"batch_change": func() map[string]any {
			return map[string]any{"name": stepCtx.BatchChange.Name, "description": stepCtx.BatchChange.Description}
		},
	}
}

func (tmplCtx *ChangesetTemplateContext) ToFuncMap() template.FuncMap {
	return template.FuncMap{
		"repository": func() map[string]any {
			return map[string]any{
				"search_result_paths": tmplCtx.Repository.SearchResultPaths(),
				"name":                tmplCtx.Repository.Name,
				"branch":              tmplCtx.Repository.Branch,
			}
		},
		"batch_change": func() map[string]any {
			return map[string]any{"name": tmplCtx.BatchChangeAttributes.Name, "description": tmplCtx.BatchChangeAttributes.Description}
		},
		"outputs": func() map[string]any { return tmplCtx.Outputs },
		"steps": func() map[string]any {
			return map[string]any{
				"modified_files": shellEscapeAll(tmplCtx.Steps.Changes.Modified...),
				"added_files":    shellEscapeAll(tmplCtx.Steps.Changes.Added...),
				"deleted_files":  shellEscapeAll(tmplCtx.Steps.Changes.Deleted...),
				"renamed_files":  shellEscapeAll(tmplCtx.Steps.Changes.Renamed...),
				"path":           tmplCtx.Steps.Path,
			}
		},
		"batch_change_link": func() string { return "${{ batch_change_link }}" },
	}
}

func newTemplate(name, tmpl string, ctxs ...template.FuncMap) (*template.Template, error) {
	t := template.New(name).Delims("${{", "}}").Option("missingkey=error").Funcs(builtins)
	for _, c := range ctxs {
		t = t.Funcs(c)
	}
	return t.Parse(tmpl)
}

// ---- JSON to Go values ----

func decodeJSON(raw json.RawMessage, yamlNumbers bool) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return convertNumbers(v, yamlNumbers), nil
}

func convertNumbers(v any, yamlNumbers bool) any {
	switch t := v.(type) {
	case json.Number:
		if yamlNumbers && !strings.ContainsAny(t.String(), ".eE") {
			if i, err := t.Int64(); err == nil {
				return int(i)
			}
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = convertNumbers(t[i], yamlNumbers)
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = convertNumbers(t[k], yamlNumbers)
		}
		return t
	}
	return v
}

func toChanges(c changesJSON) Changes {
	return Changes{Modified: c.Modified, Added: c.Added, Deleted: c.Deleted, Renamed: c.Renamed}
}

func buildStepContext(c contextJSON) (*StepContext, error) {
	outputs, err := decodeJSON(c.Outputs, c.YAMLNumbers)
	if err != nil {
		return nil, err
	}
	sc := &StepContext{
		BatchChange:  BatchChangeAttributes{Name: c.BatchChange.Name, Description: c.BatchChange.Description},
		Step:         AfterStepResult{ChangedFiles: toChanges(c.Step.changesJSON), Stdout: c.Step.Stdout, Stderr: c.Step.Stderr},
		PreviousStep: AfterStepResult{ChangedFiles: toChanges(c.PreviousStep.changesJSON), Stdout: c.PreviousStep.Stdout, Stderr: c.PreviousStep.Stderr},
		Steps:        StepsContext{Changes: toChanges(c.Steps.changesJSON), Path: c.Steps.Path},
		Repository:   Repository{Name: c.Repository.Name, Branch: c.Repository.Branch, FileMatches: c.Repository.FileMatches},
	}
	if m, ok := outputs.(map[string]any); ok {
		sc.Outputs = m
	}
	return sc, nil
}

func buildChangesetContext(c contextJSON) (*ChangesetTemplateContext, error) {
	sc, err := buildStepContext(c)
	if err != nil {
		return nil, err
	}
	return &ChangesetTemplateContext{
		BatchChangeAttributes: sc.BatchChange,
		Steps:                 sc.Steps,
		Outputs:               sc.Outputs,
		Repository:            sc.Repository,
	}, nil
}

// ---- modes ----

func render(c caseJSON) (string, error) {
	var out bytes.Buffer
	switch c.Context.Kind {
	case "changeset":
		ctx, err := buildChangesetContext(c.Context)
		if err != nil {
			return "", err
		}
		t, err := newTemplate(c.Name, c.Template, ctx.ToFuncMap())
		if err != nil {
			return "", err
		}
		// The Rust layer executes with a nil dot (see crate docs), so the oracle does too.
		if err := t.Execute(&out, nil); err != nil {
			return "", err
		}
		if c.Mode == "changeset_field" {
			return strings.TrimSpace(out.String()), nil
		}
		return out.String(), nil
	case "data":
		data, err := decodeJSON(c.Context.Data, c.Context.YAMLNumbers)
		if err != nil {
			return "", err
		}
		funcs := template.FuncMap{"outputs": func() any { return data }}
		t, err := newTemplate(c.Name, c.Template, funcs)
		if err != nil {
			return "", err
		}
		if err := t.Execute(&out, data); err != nil {
			return "", err
		}
		return out.String(), nil
	default:
		ctx, err := buildStepContext(c.Context)
		if err != nil {
			return "", err
		}
		switch c.Mode {
		case "validate":
			if _, err := validateBatchSpecTemplate(c.Template); err != nil {
				return "", err
			}
			return "ok", nil
		case "static":
			static, value, err := isStaticBool(c.Template, ctx)
			if err != nil {
				return "", err
			}
			if !static {
				return "dynamic", nil
			}
			return fmt.Sprintf("static:%v", value), nil
		}
		name := c.Name
		if c.Mode == "condition" {
			// src-cli's EvalStepCondition: empty is true; templates are named "step-condition".
			if c.Template == "" {
				return "true", nil
			}
			name = "step-condition"
		}
		t, err := newTemplate(name, c.Template, ctx.ToFuncMap())
		if err != nil {
			return "", err
		}
		if err := t.Execute(&out, nil); err != nil {
			return "", err
		}
		if c.Mode == "condition" {
			return fmt.Sprintf("%v", strings.TrimSpace(out.String()) == "true"), nil
		}
		return out.String(), nil
	}
}

func validateBatchSpecTemplate(spec string) (bool, error) {
	sfm := (&StepContext{}).ToFuncMap()
	cstfm := (&ChangesetTemplateContext{}).ToFuncMap()
	spec = regexp.MustCompile(`(?i)\$\{\{\s*[^}]*\s*outputs\.[^}]*\}\}`).ReplaceAllString(spec, "")
	spec = regexp.MustCompile(`(?i)\$\{\{\s*index\s*[^}]*\}\}`).ReplaceAllString(spec, "")
	t, err := newTemplate("validateBatchSpecTemplate", spec, sfm, cstfm)
	if err != nil {
		if m := regexp.MustCompile(`(?i)function "(?P<key>[^"]+)" not defined`).FindStringSubmatch(err.Error()); len(m) > 0 {
			return false, fmt.Errorf("validating batch spec template: unknown templating variable: '%s'", m[1])
		}
		return false, fmt.Errorf("validating batch spec template: %w", err)
	}
	var out bytes.Buffer
	if err = t.Execute(&out, nil); err != nil {
		if m := regexp.MustCompile(`(?i)at <(?P<outer>[^>]+)>:.*for key "(?P<inner>[^"]+)"`).FindStringSubmatch(err.Error()); len(m) > 0 {
			return false, fmt.Errorf("validating batch spec template: unknown templating variable: '%s.%s'", m[1], m[2])
		}
		return false, fmt.Errorf("validating batch spec template: %w", err)
	}
	return true, nil
}

// ---- partial evaluation (src-cli partial_eval.go, rewritten) ----

func isStaticBool(input string, ctx *StepContext) (bool, bool, error) {
	t, err := template.New("partial-eval").Delims("${{", "}}").Funcs(builtins).Funcs(ctx.ToFuncMap()).Parse(input)
	if err != nil {
		return false, false, err
	}
	var text strings.Builder
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			text.Write(n.Text)
		case *parse.ActionNode:
			v, ok := pePipe(ctx, n.Pipe)
			if !ok {
				return false, false, nil
			}
			fmt.Fprint(&text, v)
		default:
			return false, false, nil
		}
	}
	return true, strings.TrimSpace(text.String()) == "true", nil
}

func pePipe(ctx *StepContext, p *parse.PipeNode) (any, bool) {
	if len(p.Decl) > 0 {
		return nil, false
	}
	var last any
	for _, c := range p.Cmds {
		var ok bool
		switch first := c.Args[0].(type) {
		case *parse.BoolNode, *parse.NumberNode, *parse.StringNode, *parse.ChainNode:
			if len(c.Args) != 1 {
				return nil, false
			}
			last, ok = peNode(ctx, first)
		case *parse.IdentifierNode:
			last, ok = peFunction(ctx, first.Ident, c.Args[1:])
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
	}
	return last, true
}

func peNode(ctx *StepContext, n parse.Node) (any, bool) {
	switch n := n.(type) {
	case *parse.BoolNode:
		return n.True, true
	case *parse.NumberNode:
		isHex := len(n.Text) > 2 && n.Text[0] == '0' && (n.Text[1] == 'x' || n.Text[1] == 'X') && !strings.ContainsAny(n.Text, "pP")
		switch {
		case n.IsComplex:
			return nil, false
		case n.IsFloat && !isHex && !strings.HasPrefix(n.Text, "'") && strings.ContainsAny(n.Text, ".eEpP"):
			return n.Float64, true
		case n.IsInt:
			return int(n.Int64), true
		}
		return nil, false
	case *parse.StringNode:
		return n.Text, true
	case *parse.ChainNode:
		if len(n.Field) != 1 {
			return nil, false
		}
		if ident, ok := n.Node.(*parse.IdentifierNode); ok {
			switch ident.Ident + "." + n.Field[0] {
			case "repository.name":
				return ctx.Repository.Name, true
			case "batch_change.name":
				return ctx.BatchChange.Name, true
			case "batch_change.description":
				return ctx.BatchChange.Description, true
			}
		}
		return nil, false
	case *parse.PipeNode:
		return pePipe(ctx, n)
	}
	return nil, false
}

func peFunction(ctx *StepContext, name string, args []parse.Node) (val any, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			val, ok = nil, false
		}
	}()
	switch name {
	case "eq", "ne":
		if len(args) != 2 {
			return nil, false
		}
		a, ok1 := peNode(ctx, args[0])
		b, ok2 := peNode(ctx, args[1])
		if !ok1 || !ok2 {
			return nil, false
		}
		if name == "eq" {
			return a == b, true
		}
		return a != b, true
	case "not":
		if len(args) != 1 {
			return nil, false
		}
		a, ok := peNode(ctx, args[0])
		if !ok {
			return nil, false
		}
		truth, _ := template.IsTrue(a)
		return !truth, true
	}
	fn, ok := builtins[name]
	if !ok {
		return nil, false
	}
	var values []any
	for _, a := range args {
		v, ok := peNode(ctx, a)
		if !ok {
			return nil, false
		}
		values = append(values, v)
	}
	return callHelper(fn, values)
}

// callHelper calls a helper through reflection like src-cli does; arity or type mismatches
// panic and are recovered by the caller as "not static".
func callHelper(fn any, values []any) (any, bool) {
	args := make([]reflect.Value, len(values))
	for i, v := range values {
		args[i] = reflect.ValueOf(v)
	}
	ret := reflect.ValueOf(fn).Call(args)
	if len(ret) == 2 && !ret[1].IsNil() {
		return nil, false
	}
	return ret[0].Interface(), true
}

// ---- main ----

func evaluate(cases []caseJSON) []resultJSON {
	results := make([]resultJSON, len(cases))
	for i, c := range cases {
		out, err := render(c)
		if err != nil {
			msg := err.Error()
			results[i] = resultJSON{Error: &msg}
		} else {
			results[i] = resultJSON{Output: &out}
		}
	}
	return results
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "--record" {
		path := os.Args[2]
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var cases []caseJSON
		if err := json.Unmarshal(raw, &cases); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		results := evaluate(cases)
		for i := range cases {
			encoded, _ := json.Marshal(results[i])
			cases[i].Expected = encoded
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(cases); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var cases []caseJSON
	if err := json.Unmarshal(raw, &cases); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(evaluate(cases)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
