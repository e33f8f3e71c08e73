// Shell quoting compatible with github.com/kballard/go-shellquote (2018 release), written
// for the oracle because the build machine has no module proxy.
package main

import (
	"errors"
	"strings"
	"unicode/utf8"
)

const (
	sqSpecialChars      = "\\'\"`${[|&;<>()*?!"
	sqExtraSpecialChars = " \t\n"
	sqPrefixChars       = "~"
)

func shellJoin(args ...string) string {
	var b strings.Builder
	for i, arg := range args {
		if i != 0 {
			b.WriteByte(' ')
		}
		shellQuoteWord(arg, &b)
	}
	return b.String()
}

func shellQuoteWord(word string, b *strings.Builder) {
	if word == "" {
		b.WriteString("''")
		return
	}
	if strings.ContainsAny(word, sqExtraSpecialChars) {
		leftTrimmed := strings.TrimLeft(word, "'")
		starting := len(word) - len(leftTrimmed)
		trimmed := strings.TrimRight(leftTrimmed, "'")
		ending := len(leftTrimmed) - len(trimmed)
		b.WriteString(strings.Repeat("\\'", starting))
		b.WriteByte('\'')
		for _, r := range trimmed {
			if r == '\'' {
				b.WriteString("'\\''")
			} else {
				b.WriteRune(r)
			}
		}
		b.WriteByte('\'')
		b.WriteString(strings.Repeat("\\'", ending))
		return
	}
	first, size := utf8.DecodeRuneInString(word)
	if strings.ContainsRune(sqSpecialChars, first) || strings.ContainsRune(sqPrefixChars, first) {
		b.WriteByte('\\')
	}
	b.WriteRune(first)
	for _, r := range word[size:] {
		if strings.ContainsRune(sqSpecialChars, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
}

var (
	errUnterminatedSingle = errors.New("Unterminated single-quoted string")
	errUnterminatedDouble = errors.New("Unterminated double-quoted string")
	errUnterminatedEscape = errors.New("Unterminated backslash-escape")
)

func shellSplit(input string) ([]string, error) {
	words := make([]string, 0)
	runes := []rune(input)
	i := 0
	for i < len(runes) {
		c := runes[i]
		if c == ' ' || c == '\n' || c == '\t' {
			i++
			continue
		}
		if c == '\\' {
			if i+1 >= len(runes) {
				return nil, errUnterminatedEscape
			}
			if runes[i+1] == '\n' {
				i += 2
				continue
			}
		}
		var word strings.Builder
	wordLoop:
		for i < len(runes) {
			c := runes[i]
			i++
			switch {
			case c == '\'':
				for {
					if i >= len(runes) {
						return nil, errUnterminatedSingle
					}
					d := runes[i]
					i++
					if d == '\'' {
						break
					}
					word.WriteRune(d)
				}
			case c == '"':
				for {
					if i >= len(runes) {
						return nil, errUnterminatedDouble
					}
					d := runes[i]
					i++
					if d == '"' {
						break
					}
					if d == '\\' && i < len(runes) && strings.ContainsRune("$`\"\n\\", runes[i]) {
						if runes[i] != '\n' {
							word.WriteRune(runes[i])
						}
						i++
						continue
					}
					word.WriteRune(d)
				}
			case c == '\\':
				if i >= len(runes) {
					return nil, errUnterminatedEscape
				}
				d := runes[i]
				i++
				if d != '\n' {
					word.WriteRune(d)
				}
			case c == ' ' || c == '\n' || c == '\t':
				break wordLoop
			default:
				word.WriteRune(c)
			}
		}
		words = append(words, word.String())
	}
	return words, nil
}
