<?php

declare(strict_types=1);

namespace Stoker;

/**
 * One HTTP/1.1 connection to the daemon, kept open for many requests (keep-alive), over a
 * stream socket: unix or TCP, nothing but PHP's standard streams.
 *
 * The daemon closes a connection that stays idle a few seconds (and any connection when it
 * restarts). A request that finds its kept connection closed, before a byte of answer came,
 * is sent once more on a new one; a new connection that fails is the error.
 *
 * PHP reports socket failures as warnings as well as return values: every call that can warn
 * runs under a handler that turns the warning into the StokerException's message instead, so
 * an app sees one exception and never a warning.
 *
 * @internal
 */
final class Connection
{
    /** @var resource|null */
    private $stream = null;
    /** Requests answered on the current stream; 0: it is new (its failure is not a stale one). */
    private int $served = 0;
    /** Connections opened, for the curious (and the tests of reconnecting). */
    public int $opened = 0;

    public function __construct(
        private readonly Target $target,
        private readonly float $connectTimeout = 5.0,
    ) {
    }

    /**
     * Send one request; returns [status, body]. `$timeout`: seconds to wait for the answer.
     *
     * @return array{0: int, 1: string}
     */
    public function request(string $method, string $path, array $headers, string $body, float $timeout): array
    {
        $head = "$method $path HTTP/1.1\r\nHost: {$this->target->host}\r\n";
        foreach ($headers as $name => $value) {
            $head .= "$name: $value\r\n";
        }
        $message = $head . 'Content-Length: ' . strlen($body) . "\r\n\r\n" . $body;
        if ($this->stream !== null && $this->served > 0) {
            try {
                return $this->exchange($message, $timeout);
            } catch (StaleConnection) {
                $this->close(); // closed by the daemon while idle: once more, on a new one
            }
        }
        try {
            return $this->exchange($message, $timeout);
        } catch (StaleConnection $e) {
            $this->close();
            throw new StokerException("the daemon at {$this->target->shown} closed the connection without an answer"
                . ($e->getMessage() !== '' ? ": {$e->getMessage()}" : ''), 0, 'unreachable');
        }
    }

    public function close(): void
    {
        if ($this->stream !== null) {
            @fclose($this->stream);
        }
        $this->stream = null;
        $this->served = 0;
    }

    /** @return array{0: int, 1: string} */
    private function exchange(string $message, float $timeout): array
    {
        $stream = $this->stream ?? $this->connect();
        self::quietly(static fn () => stream_set_timeout($stream, (int)$timeout, (int)(fmod($timeout, 1) * 1e6)));
        $sent = 0;
        $length = strlen($message);
        while ($sent < $length) {
            $n = self::quietly(static fn () => fwrite($stream, substr($message, $sent)), $warning);
            if ($n === false || $n === 0) {
                throw new StaleConnection($warning ?? 'the write failed');
            }
            $sent += $n;
        }
        $statusLine = $this->line($stream, $timeout);
        if ($statusLine === null) {
            throw new StaleConnection('');
        }
        if (!preg_match('~^HTTP/1\.[01] (\d{3})~', $statusLine, $m)) {
            $this->close();
            throw new StokerException('not an HTTP answer from ' . $this->target->shown . ': '
                . substr(trim($statusLine), 0, 80), 0, 'bad_answer');
        }
        $status = (int)$m[1];
        $headers = [];
        while (true) {
            $line = $this->line($stream, $timeout);
            if ($line === null) {
                $this->close();
                throw new StokerException("the answer from {$this->target->shown} ended in its headers", 0, 'bad_answer');
            }
            if ($line === "\r\n" || $line === "\n") {
                break;
            }
            [$name, $value] = array_pad(explode(':', $line, 2), 2, '');
            $headers[strtolower(trim($name))] = trim($value);
        }
        $body = $this->body($stream, $headers, $timeout);
        $this->served++;
        if (strtolower($headers['connection'] ?? '') === 'close' || !isset($headers['content-length'])
            && strtolower($headers['transfer-encoding'] ?? '') !== 'chunked') {
            $this->close();
        }
        return [$status, $body];
    }

    /** @return resource */
    private function connect()
    {
        $errno = 0;
        $errstr = '';
        $stream = self::quietly(
            fn () => stream_socket_client($this->target->address, $errno, $errstr, $this->connectTimeout),
            $warning
        );
        if ($stream === false) {
            // ENOENT (no socket file), ECONNREFUSED (nothing listens): the daemon is not running
            $reason = $errstr !== '' ? $errstr : ($warning ?? 'no answer');
            $down = in_array($errno, [2, 111], true)
                || preg_match('/No such file|Connection refused/i', $reason);
            throw new StokerException(
                $down ? "the daemon is not running (no answer on {$this->target->shown}: $reason)"
                    : "cannot reach the daemon at {$this->target->shown}: $reason",
                0,
                $down ? 'not_running' : 'unreachable'
            );
        }
        $this->stream = $stream;
        $this->served = 0;
        $this->opened++;
        return $stream;
    }

    /** One line of the answer; null at its end (the daemon closed the connection). */
    private function line($stream, float $timeout): ?string
    {
        $line = self::quietly(static fn () => fgets($stream, 65536));
        if ($line === false) {
            $this->failedRead($stream, $timeout);
            return null;
        }
        return $line;
    }

    private function body($stream, array $headers, float $timeout): string
    {
        if (strtolower($headers['transfer-encoding'] ?? '') === 'chunked') {
            $body = '';
            while (true) {
                $size = $this->line($stream, $timeout);
                if ($size === null) {
                    $this->truncated();
                }
                $size = hexdec(trim(explode(';', $size)[0]));
                if ($size === 0) {
                    while (($trailer = $this->line($stream, $timeout)) !== null && trim($trailer) !== '') {
                    }
                    return $body;
                }
                $body .= $this->exactly($stream, (int)$size, $timeout);
                $this->line($stream, $timeout); // the CRLF after each chunk
            }
        }
        if (isset($headers['content-length'])) {
            return $this->exactly($stream, (int)$headers['content-length'], $timeout);
        }
        $body = '';
        while (!feof($stream)) {
            $data = self::quietly(static fn () => fread($stream, 65536));
            if ($data === false) {
                break;
            }
            $body .= $data;
        }
        return $body;
    }

    private function exactly($stream, int $length, float $timeout): string
    {
        $body = '';
        while (strlen($body) < $length) {
            $data = self::quietly(static fn () => fread($stream, $length - strlen($body)));
            if ($data === false || $data === '') {
                $this->failedRead($stream, $timeout);
                $this->truncated();
            }
            $body .= $data;
        }
        return $body;
    }

    /** A read that returned nothing: a timeout is an error of its own, an end is the caller's. */
    private function failedRead($stream, float $timeout): void
    {
        $meta = stream_get_meta_data($stream);
        if ($meta['timed_out']) {
            $this->close();
            throw new StokerException(
                sprintf('no answer from the daemon at %s within %gs', $this->target->shown, $timeout),
                0,
                'timeout'
            );
        }
    }

    private function truncated(): never
    {
        $this->close();
        throw new StokerException("the answer from {$this->target->shown} ended early", 0, 'bad_answer');
    }

    /**
     * `$call()` with PHP's warnings caught instead of shown: the last one's text goes to
     * `$warning`.
     */
    private static function quietly(callable $call, ?string &$warning = null): mixed
    {
        $warning = null;
        set_error_handler(static function (int $level, string $text) use (&$warning): bool {
            $warning = preg_replace('/^[a-z_]+\(\): /', '', $text);
            return true;
        });
        try {
            return $call();
        } finally {
            restore_error_handler();
        }
    }
}
