package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable of the configuration.
const EnvPrefix = "OTONODE_"

// Setting is one leaf of the configuration.
type Setting struct {
	Path  string // YAML path, e.g. "completion.quiet_period"
	Env   string // environment variable
	value reflect.Value
}

// Settings lists every setting of c, in declaration order.
func (c *Config) Settings() []Setting {
	var out []Setting
	walk(reflect.ValueOf(c).Elem(), "", &out)
	return out
}

func walk(v reflect.Value, prefix string, out *[]Setting) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Duration]() {
			walk(fv, path+".", out)
			continue
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
		*out = append(*out, Setting{Path: path, Env: env, value: fv})
	}
}

// Set parses s into the setting: durations as Go durations ("2s"), lists
// as comma-separated values.
func (s Setting) Set(text string) error {
	v := s.value
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("config: %s: %w", s.Path, err)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(text)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("config: %s: %w", s.Path, err)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return fmt.Errorf("config: %s: %w", s.Path, err)
		}
		v.SetFloat(f)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return fmt.Errorf("config: %s: %w", s.Path, err)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, p := range strings.Split(text, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("config: %s: unsupported type %s", s.Path, v.Type())
	}
	return nil
}

// String formats the setting's current value as Set reads it.
func (s Setting) String() string {
	v := s.value
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	}
	return fmt.Sprint(v.Interface())
}

// ApplyEnv overlays the environment (as returned by os.Environ) onto c.
func (c *Config) ApplyEnv(environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	for _, s := range c.Settings() {
		if v, ok := env[s.Env]; ok {
			if err := s.Set(v); err != nil {
				return err
			}
		}
	}
	return nil
}
