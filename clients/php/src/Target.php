<?php

declare(strict_types=1);

namespace Stoker;

/**
 * Where the daemon answers, from the target a Client is given:
 *
 * - `unix:///path/to/stoker.sock`: the daemon's unix socket (no token needed: its file mode is
 *   the door);
 * - `http://host:port`: its TCP listener (`[daemon] listen`), which asks for the token;
 * - anything else: the path of a stoker.toml, whose unix socket is used, found the way the
 *   CLI finds it: `<state_dir>/stoker.sock`, state_dir being `[daemon] state_dir` (default
 *   `.stoker`) relative to the config file's folder.
 *
 * PHP has no TOML parser, so state_dir is read by the same line scan the CLI uses before it
 * reaches for one (src/stoker/locate.py): it is sure when the file never says `state_dir`, or
 * says it once as `state_dir = "plain"` (or `'plain'`) under `[daemon]`. Anything fancier
 * (escapes, multi-line strings, a dotted key) is refused with the advice to pass the socket
 * as `unix://`.
 *
 * @internal
 */
final class Target
{
    public const DEFAULT_STATE_DIR = '.stoker';
    public const SOCKET = 'stoker.sock';

    private function __construct(
        /** `unix://PATH` or `tcp://HOST:PORT`, for stream_socket_client() */
        public readonly string $address,
        /** the Host header */
        public readonly string $host,
        /** what error messages call it */
        public readonly string $shown,
    ) {
    }

    public static function parse(string $target): self
    {
        if ($target === '') {
            throw new StokerException('no target: give a stoker.toml path, unix:///…/stoker.sock or http://host:port', 0, 'target');
        }
        if (str_starts_with($target, 'unix://')) {
            $path = substr($target, 7);
            if ($path === '' || $path[0] !== '/') {
                throw new StokerException("unix target $target: expected unix:///absolute/path/stoker.sock", 0, 'target');
            }
            return self::unix($path);
        }
        if (preg_match('~^([a-z][a-z0-9+.-]*)://~i', $target, $m)) {
            return self::http($target, strtolower($m[1]));
        }
        return self::unix(self::socketOfConfig($target));
    }

    private static function unix(string $path): self
    {
        return new self("unix://$path", 'localhost', $path);
    }

    private static function http(string $target, string $scheme): self
    {
        $url = parse_url($target);
        if ($scheme !== 'http' || $url === false || !isset($url['host'])) {
            throw new StokerException(
                "target $target: expected http://host:port (stoker's TCP listener speaks plain HTTP;"
                . ' over TLS, put a proxy of your own in front), unix:///…/stoker.sock or a stoker.toml path',
                0,
                'target'
            );
        }
        if (($url['path'] ?? '/') !== '/' && ($url['path'] ?? '') !== '') {
            throw new StokerException("target $target: expected no path after host:port", 0, 'target');
        }
        $host = $url['host'];
        $port = $url['port'] ?? 80;
        $hostPort = (str_contains($host, ':') && $host[0] !== '[' ? "[$host]" : $host) . ":$port";
        return new self("tcp://$hostPort", $hostPort, "http://$hostPort");
    }

    /** The unix socket of the daemon of this config file. */
    public static function socketOfConfig(string $config): string
    {
        if (str_starts_with($config, '~/') && ($home = getenv('HOME'))) {
            $config = $home . substr($config, 1);
        }
        $file = self::absolute($config);
        $text = is_file($file) && is_readable($file) ? @file_get_contents($file) : false;
        if ($text === false) {
            throw new StokerException("no stoker.toml to read at $file (give its path, unix:///…/stoker.sock or http://host:port)", 0, 'target');
        }
        $stateDir = self::scanStateDir($text);
        if ($stateDir === null) {
            throw new StokerException(
                "cannot read [daemon] state_dir of $file without a TOML parser: write it on one line as"
                . ' state_dir = "path", or give the socket itself: unix:///…/stoker.sock',
                0,
                'target'
            );
        }
        $dir = $stateDir[0] === '/' ? $stateDir : dirname($file) . '/' . $stateDir;
        return self::normalize($dir) . '/' . self::SOCKET;
    }

    /**
     * `[daemon] state_dir` of a stoker.toml's text, or null when a line scan cannot be sure
     * (the rules of scan_state_dir in src/stoker/locate.py, which agree with a TOML parser).
     */
    public static function scanStateDir(string $text): ?string
    {
        if (str_contains($text, '\\') || str_contains($text, '"""') || str_contains($text, "'''")) {
            return null;
        }
        // Python's splitlines() and strip(), which the CLI's scan uses, also split on and strip
        // these; trim() and \n do not. With one about (or text that is not UTF-8, which the
        // daemon refuses anyway: preg_match's false), leave the file to a TOML parser.
        $exotic = '/[\x0b\x0c\x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]/u';
        if (preg_match($exotic, $text) !== 0) {
            return null;
        }
        $count = substr_count($text, 'state_dir');
        if ($count === 0) {
            return self::DEFAULT_STATE_DIR;
        }
        if ($count > 1) {
            return null;
        }
        $table = null;
        foreach (preg_split('/\r\n|\r|\n/', $text) as $line) {
            $stripped = trim($line);
            if (str_starts_with($stripped, '[')) {
                $close = strpos($stripped, ']');
                if ($close === false || str_starts_with($stripped, '[[')) {
                    return null;
                }
                $rest = ltrim(substr($stripped, $close + 1));
                if ($rest !== '' && $rest[0] !== '#') {
                    return null;
                }
                $table = trim(substr($stripped, 1, $close - 1));
            } elseif (str_starts_with($stripped, 'state_dir')) {
                return $table === 'daemon' ? self::plainValue(substr($stripped, 9)) : null;
            }
        }
        return null;
    }

    /** The string in `= "value"  # comment`, when it is that simple. */
    private static function plainValue(string $afterKey): ?string
    {
        $rest = ltrim($afterKey);
        if (!str_starts_with($rest, '=')) {
            return null;
        }
        $rest = ltrim(substr($rest, 1));
        $quote = $rest[0] ?? '';
        if ($quote !== '"' && $quote !== "'") {
            return null;
        }
        $end = strpos($rest, $quote, 1);
        if ($end === false) {
            return null;
        }
        $value = substr($rest, 1, $end - 1);
        $tail = ltrim(substr($rest, $end + 1));
        if (($tail !== '' && $tail[0] !== '#') || $value === '' || preg_match('/[\x00-\x1f"\'\x7f]/', $value)) {
            return null;
        }
        return $value;
    }

    private static function absolute(string $path): string
    {
        if ($path !== '' && $path[0] === '/') {
            return self::normalize($path);
        }
        $cwd = getcwd();
        return self::normalize(($cwd === false ? '.' : $cwd) . '/' . $path);
    }

    /** `a/./b/../c` → `a/c`, as os.path.normpath (no symlinks resolved: the CLI resolves none). */
    private static function normalize(string $path): string
    {
        $parts = [];
        foreach (explode('/', $path) as $part) {
            if ($part === '' || $part === '.') {
                continue;
            }
            if ($part === '..') {
                array_pop($parts);
                continue;
            }
            $parts[] = $part;
        }
        return ($path !== '' && $path[0] === '/' ? '/' : '') . implode('/', $parts);
    }
}
