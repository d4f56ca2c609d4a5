<?php

declare(strict_types=1);

namespace Stoker;

/**
 * A client of a running stoker daemon's HTTP API (`/api/v1`).
 *
 *     $stoker = new \Stoker\Client('/srv/shop/stoker.toml');
 *     $job = $stoker->enqueue('build_apk', ['package' => 'com.example.shop'], key: 'com.example.shop');
 *     $job = $stoker->wait($job['id'], 60);
 *
 * `$target`: the path of the daemon's stoker.toml (its unix socket is used, found as the CLI
 * finds it), `unix:///path/to/stoker.sock`, or `http://host:port` (its TCP listener, which
 * asks for `$token`: sent as `Authorization: Bearer`). One connection is kept open for every
 * call (HTTP/1.1 keep-alive) and opened again when the daemon has closed it.
 *
 * Results are the API's JSON as PHP arrays (a job: `id`, `task`, `state`, `params`, `attempt`,
 * `output`, `error` …). Every failure is a StokerException: a refusal with the daemon's
 * HTTP status, error code, message and the parameter it names; a daemon that is not running
 * with the code `not_running`.
 */
final class Client
{
    /** The longest a single wait() may last: the daemon's own bound on one long poll. */
    public const MAX_WAIT = 300.0;

    private readonly Connection $connection;

    /**
     * @param float $timeout seconds to wait for an answer to any call but wait() (which waits
     *                       its own timeout, and a margin)
     */
    public function __construct(
        string $target,
        private readonly ?string $token = null,
        private readonly float $timeout = 30.0,
    ) {
        $this->connection = new Connection(Target::parse($target));
    }

    // jobs -----------------------------------------------------------------------------------

    /**
     * Queue a job of `$task` with its parameters; returns the job (`201`), or the live job
     * that already holds `$key` (then nothing new is queued).
     *
     * @param array<string, mixed>         $params   the task's parameters, name => value
     * @param string|int|float|null        $delay    run it this long from now: "30s", "5m", 90 …
     * @param string|\DateTimeInterface|null $runAt  run it at this time (ISO 8601, or a date)
     * @param string|null                  $key      deduplication: one live job per key
     * @param int                          $priority higher runs first within its queue
     * @param bool|null                    $created  set to true when a new job was queued,
     *                                               false when the live job of `$key` came back
     * @return array<string, mixed> the job
     */
    public function enqueue(
        string $task,
        array $params = [],
        string|int|float|null $delay = null,
        string|\DateTimeInterface|null $runAt = null,
        ?string $key = null,
        int $priority = 0,
        ?bool &$created = null,
    ): array {
        $body = ['task' => $task, 'params' => self::object($params), 'priority' => $priority];
        self::when($body, $delay, $runAt);
        if ($key !== null) {
            $body['key'] = $key;
        }
        [$status, $job] = $this->send('POST', '/api/v1/jobs', $body);
        $created = $status === 201;
        return $job;
    }

    /**
     * Queue one job of `$task` per item of `$paramsList`, all or none (one transaction);
     * returns the jobs, in order. A refused item is named by the exception's getIndex().
     *
     * @param list<array<string, mixed>> $paramsList
     * @return list<array<string, mixed>>
     */
    public function enqueueMany(
        string $task,
        array $paramsList,
        string|int|float|null $delay = null,
        string|\DateTimeInterface|null $runAt = null,
        int $priority = 0,
    ): array {
        $body = [
            'task' => $task,
            'params' => array_map(self::object(...), array_values($paramsList)),
            'priority' => $priority,
        ];
        self::when($body, $delay, $runAt);
        return $this->call('POST', '/api/v1/jobs/batch', $body);
    }

    /**
     * One job, with the record of its attempts (`attempts`) and the end of its output.
     *
     * @return array<string, mixed>
     */
    public function job(int $id): array
    {
        return $this->call('GET', "/api/v1/jobs/$id");
    }

    /**
     * The job once it has finished (succeeded, failed or cancelled), or as it stands after
     * `$timeout` seconds, whichever comes first: check Job::isFinished(). One request (the
     * API's long poll), no loop; `$timeout` is at most MAX_WAIT, 300 s.
     *
     * @return array<string, mixed>
     */
    public function wait(int $id, float $timeout = self::MAX_WAIT): array
    {
        if (!($timeout >= 0 && $timeout <= self::MAX_WAIT)) {
            throw new \InvalidArgumentException(
                'wait(): $timeout is between 0 and ' . self::MAX_WAIT . " seconds, got $timeout (call again to wait longer)"
            );
        }
        return $this->call('GET', "/api/v1/jobs/$id?wait=" . sprintf('%.3F', $timeout), null, $timeout + 30);
    }

    /**
     * Cancel a queued job, or stop a running one; returns the job. A finished job: 409.
     *
     * @return array<string, mixed>
     */
    public function cancel(int $id): array
    {
        return $this->call('POST', "/api/v1/jobs/$id/cancel");
    }

    /**
     * Queue a failed or cancelled job again; returns the job. A job not finished: 409.
     *
     * @return array<string, mixed>
     */
    public function retry(int $id): array
    {
        return $this->call('POST', "/api/v1/jobs/$id/retry");
    }

    /**
     * Jobs, newest first: `$state` (queued, running, succeeded, failed, cancelled), `$queue`,
     * `$task` select; `$limit` (default 100, at most 1000) and `$before` (a job id: the
     * next page) page.
     *
     * @return list<array<string, mixed>>
     */
    public function jobs(
        ?string $state = null,
        ?string $queue = null,
        ?string $task = null,
        ?int $limit = null,
        ?int $before = null,
    ): array {
        $query = array_filter(
            ['state' => $state, 'queue' => $queue, 'task' => $task, 'limit' => $limit, 'before' => $before],
            static fn ($v) => $v !== null
        );
        return $this->call('GET', '/api/v1/jobs' . ($query ? '?' . http_build_query($query) : ''));
    }

    /**
     * Every queue: `name`, `concurrency`, `paused`, `queued`, `running` …
     *
     * @return list<array<string, mixed>>
     */
    public function queues(): array
    {
        return $this->call('GET', '/api/v1/queues');
    }

    // programs -------------------------------------------------------------------------------

    /**
     * The program instances (`name` like `mailer:0`, `state`, `pid`, `restarts` …): all of
     * them, or those `$name` selects (a program, or one instance `mailer:1`).
     *
     * @return list<array<string, mixed>>
     */
    public function programs(?string $name = null): array
    {
        return $this->call('GET', '/api/v1/programs' . ($name === null ? '' : '/' . rawurlencode($name)));
    }

    /**
     * Restart a program (every instance), one instance (`mailer:1`) or `all`; returns the
     * instances it restarted, once they have started again.
     *
     * @return list<array<string, mixed>>
     */
    public function restart(string $name): array
    {
        return $this->call('POST', '/api/v1/programs/' . rawurlencode($name) . '/restart', null, max($this->timeout, 120.0));
    }

    /**
     * The daemon: `version`, `node`, `pid`, `uptime`, `store`.
     *
     * @return array<string, mixed>
     */
    public function status(): array
    {
        return $this->call('GET', '/api/v1/status');
    }

    /** Close the kept connection now (it is closed anyway when the Client goes). */
    public function close(): void
    {
        $this->connection->close();
    }

    public function __destruct()
    {
        $this->connection->close();
    }

    // plumbing -------------------------------------------------------------------------------

    /**
     * One call of the API: its JSON answer, or the StokerException of its refusal.
     *
     * @param array<string, mixed>|null $body
     */
    public function call(string $method, string $path, ?array $body = null, ?float $timeout = null): mixed
    {
        return $this->send($method, $path, $body, $timeout)[1];
    }

    /**
     * @param array<string, mixed>|null $body
     * @return array{0: int, 1: mixed} the HTTP status and the JSON answer
     */
    private function send(string $method, string $path, ?array $body = null, ?float $timeout = null): array
    {
        $headers = ['Accept' => 'application/json'];
        $data = '';
        if ($body !== null) {
            try {
                $data = json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION);
            } catch (\JsonException $e) {
                throw new StokerException("the request cannot be sent as JSON: {$e->getMessage()}", 0, 'encode', null, null, $e);
            }
            $headers['Content-Type'] = 'application/json';
        }
        if ($this->token !== null && $this->token !== '') {
            $headers['Authorization'] = "Bearer {$this->token}";
        }
        [$status, $raw] = $this->connection->request($method, $path, $headers, $data, $timeout ?? $this->timeout);
        try {
            $answer = json_decode($raw, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            $answer = null;
        }
        if ($status >= 400) {
            $error = is_array($answer) && is_array($answer['error'] ?? null) ? $answer['error'] : null;
            if ($error === null || !isset($error['message'], $error['code'])) {
                throw new StokerException("HTTP $status: " . substr($raw, 0, 200), $status, 'http_' . $status);
            }
            throw new StokerException(
                (string)$error['message'],
                $status,
                (string)$error['code'],
                isset($error['param']) ? (string)$error['param'] : null,
                isset($error['index']) ? (int)$error['index'] : null,
            );
        }
        if ($answer === null && trim($raw) !== 'null') {
            throw new StokerException("not JSON from the daemon (HTTP $status): " . substr($raw, 0, 200), $status, 'bad_answer');
        }
        return [$status, $answer];
    }

    /** PHP's empty array is JSON's `[]`: parameters are an object, even when there are none. */
    private static function object(array $params): array|\stdClass
    {
        return $params === [] ? new \stdClass() : $params;
    }

    private static function when(array &$body, string|int|float|null $delay, string|\DateTimeInterface|null $runAt): void
    {
        if ($delay !== null) {
            $body['delay'] = $delay;
        }
        if ($runAt !== null) {
            $body['run_at'] = $runAt instanceof \DateTimeInterface ? $runAt->format(\DateTimeInterface::RFC3339_EXTENDED) : $runAt;
        }
    }
}
