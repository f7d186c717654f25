package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/store/index"
)

// nodeConfig is the --config flag and the setting flags of the commands that
// work from a node's configuration (serve, worker, status, exports), so all
// of them read the same file, OTONODE_* variables and flags the same way.
type nodeConfig struct {
	file  *string
	apply func(*config.Config) error
}

// bindNodeConfig adds --config (described by usage) and the setting flags to fs.
func bindNodeConfig(fs *flag.FlagSet, usage string) nodeConfig {
	return nodeConfig{file: fs.String("config", "", usage), apply: config.BindFlags(fs)}
}

// load builds the configuration from the defaults, the YAML file, the
// environment and the flags, in that order (flags win). Call it after the
// flags were parsed.
func (nc nodeConfig) load() (config.Config, error) {
	cfg := config.Default()
	if *nc.file != "" {
		if err := cfg.LoadFile(*nc.file); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Environ()); err != nil {
		return cfg, err
	}
	if err := nc.apply(&cfg); err != nil {
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

// parseNodeConfig parses a command line without positional arguments and
// loads the configuration.
func parseNodeConfig(fs *flag.FlagSet, args []string, nc nodeConfig) (config.Config, error) {
	if err := parseArgs(fs, args); err != nil {
		return config.Config{}, err
	}
	return nc.load()
}

// parseArgs parses a command line that takes no positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// openNodeIndex opens the database of the node with this configuration:
// PostgreSQL, or the SQLite file under the data directory. A tool that only
// reads (status, exports) wants the file to exist already (mustExist), so a
// wrong --data_dir is an error instead of a new empty database; a worker
// may start before its node and only logs that.
func openNodeIndex(ctx context.Context, cfg config.Config, log *slog.Logger, mustExist bool) (*index.Index, error) {
	if cfg.UsesPostgres() {
		return index.OpenPostgres(ctx, cfg.Database)
	}
	if cfg.Database != "" {
		return nil, fmt.Errorf("%w: database %q is neither postgres://… nor empty (SQLite)", errUsage, cfg.Database)
	}
	path := cfg.DataPath("index.db")
	if _, err := os.Stat(path); err != nil {
		if mustExist {
			abs, _ := filepath.Abs(path)
			return nil, fmt.Errorf("no node database at %s (give the node's --data_dir or --database): %w", abs, err)
		}
		log.Warn("no node database here yet; a worker must share the node's database", "sqlite", path)
	}
	return index.OpenSQLite(ctx, path)
}
