package config

import (
	"flag"
)

// recorded is a flag.Value that remembers what the command line said.
type recorded struct {
	def string
	set *string
}

func (r recorded) String() string { return r.def }
func (r recorded) Set(s string) error {
	*r.set = s
	return nil
}

// BindFlags defines one flag per setting on fs, named by its YAML path
// (--dicom.port, --completion.quiet_period). Parsing only records the
// values; the returned function applies them to a configuration, so that
// the file named by another flag and the environment can be loaded first
// and the command line still wins.
func BindFlags(fs *flag.FlagSet) (apply func(*Config) error) {
	def := Default()
	values := map[string]*string{}
	for _, s := range def.Settings() {
		p := new(string)
		values[s.Path] = p
		fs.Var(recorded{def: s.String(), set: p}, s.Path, "sets "+s.Path+" (env "+s.Env+")")
	}
	return func(c *Config) error {
		var err error
		fs.Visit(func(f *flag.Flag) {
			if err != nil {
				return
			}
			if _, ok := values[f.Name]; !ok {
				return
			}
			for _, s := range c.Settings() {
				if s.Path == f.Name {
					err = s.Set(*values[f.Name])
				}
			}
		})
		return err
	}
}
