<?php

declare(strict_types=1);

namespace Stoker\Tests;

use PHPUnit\Framework\TestCase;
use Stoker\Client;
use Stoker\Job;
use Stoker\StokerException;

/**
 * Every method of \Stoker\Client against a real daemon (see bootstrap.php), through the unix
 * socket the client finds from stoker.toml, unless a test says TCP.
 */
final class ClientTest extends TestCase
{
    private static function env(string $name): string
    {
        $value = getenv($name);
        if ($value === false || $value === '') {
            throw new \RuntimeException("$name is not set: run these tests through tests/test_php_client.py");
        }
        return $value;
    }

    private static function client(): Client
    {
        return new Client(self::env('STOKER_TEST_CONFIG'));
    }

    /** Poll `$check` until it returns something truthy; fail at the deadline. */
    private static function waitFor(callable $check, string $what, float $timeout = 30.0): mixed
    {
        $deadline = microtime(true) + $timeout;
        $delay = 5000;
        while (true) {
            $result = $check();
            if ($result) {
                return $result;
            }
            if (microtime(true) > $deadline) {
                self::fail("timed out after {$timeout}s waiting for $what");
            }
            usleep($delay);
            $delay = min($delay * 2, 100000);
        }
    }

    private static function refusal(callable $call): StokerException
    {
        try {
            $call();
        } catch (StokerException $e) {
            return $e;
        }
        self::fail('expected a StokerException');
    }

    // enqueue, job, wait ---------------------------------------------------------------------

    public function testEnqueueReturnsTheQueuedJob(): void
    {
        $job = self::client()->enqueue('echo', ['word' => 'hello']);
        $this->assertIsInt($job['id']);
        $this->assertSame('queued', $job['state']);
        $this->assertSame('echo', $job['task']);
        $this->assertSame(['word' => 'hello'], $job['params']);
        $this->assertSame('fast', $job['queue']);
    }

    public function testWaitReturnsTheFinishedJobInOneCall(): void
    {
        $client = self::client();
        $job = $client->enqueue('echo', ['word' => 'waited']);
        $done = $client->wait($job['id'], 60);
        $this->assertTrue(Job::isFinished($done));
        $this->assertTrue(Job::succeeded($done));
        $this->assertSame("waited\n", $done['output']);
        $this->assertSame(0, $done['exit_code']);
        $this->assertCount(1, $done['attempts']);
    }

    public function testWaitReturnsAnUnfinishedJobAsItStandsAtItsTimeout(): void
    {
        $client = self::client();
        $job = $client->enqueue('slow');
        $still = $client->wait($job['id'], 0.2); // slow sleeps 1000 s: it cannot finish meanwhile
        $this->assertContains($still['state'], ['queued', 'running']);
        $this->assertFalse(Job::isFinished($still));
        $client->cancel($job['id']);
        $this->assertSame('cancelled', $client->wait($job['id'], 60)['state']);
    }

    public function testWaitRefusesATimeoutBeyondTheDaemonsBound(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        self::client()->wait(1, Client::MAX_WAIT + 1);
    }

    public function testEmptyParamsAreNoParams(): void
    {
        $client = self::client();
        $job = $client->enqueue('hello');
        $this->assertSame([], $job['params']);
        $this->assertSame("hello\n", $client->wait($job['id'], 60)['output']);
        // The API takes PHP's own json_encode of an empty array too (`"params": []`).
        $raw = $client->call('POST', '/api/v1/jobs', ['task' => 'hello', 'params' => []]);
        $this->assertSame('queued', $raw['state']);
    }

    public function testEnqueueOptions(): void
    {
        $client = self::client();
        $later = $client->enqueue('echo', ['word' => 'later'], delay: '1h', priority: 7);
        $this->assertSame('queued', $later['state']);
        $this->assertSame(7, $later['priority']);
        $runAt = new \DateTimeImmutable($later['run_at']);
        $this->assertGreaterThan(time() + 3000, $runAt->getTimestamp());

        $at = new \DateTimeImmutable('+2 hours');
        $job = $client->enqueue('echo', ['word' => 'at'], runAt: $at);
        $this->assertSame($at->getTimestamp(), (new \DateTimeImmutable($job['run_at']))->getTimestamp());
        $job = $client->enqueue('echo', ['word' => 'iso'], runAt: '2099-01-02T03:04:05+00:00');
        $this->assertSame(
            gmmktime(3, 4, 5, 1, 2, 2099),
            (new \DateTimeImmutable($job['run_at']))->getTimestamp()
        );

        // key: one live job per key; the same key gives the live job back, nothing new.
        $key = 'dedup-' . bin2hex(random_bytes(4));
        $first = $client->enqueue('echo', ['word' => 'one'], delay: 3600, key: $key, created: $created);
        $this->assertTrue($created);
        $again = $client->enqueue('echo', ['word' => 'two'], delay: 3600, key: $key, created: $created);
        $this->assertFalse($created);
        $this->assertSame($first['id'], $again['id']);
        $this->assertSame($key, $again['key']);
        $this->assertSame(['word' => 'one'], $again['params']);

        // Named arguments from an array, for apps that carry options around.
        $options = ['delay' => '30m', 'priority' => 3];
        $job = $client->enqueue('echo', ['word' => 'spread'], ...$options);
        $this->assertSame(3, $job['priority']);
        foreach ([$later, $first, $job] as $queued) {
            $client->cancel($queued['id']);
        }
    }

    public function testEnqueueManyQueuesAllOrNone(): void
    {
        $client = self::client();
        $jobs = $client->enqueueMany('echo', [['word' => 'a'], ['word' => 'b'], ['word' => 'c']]);
        $this->assertCount(3, $jobs);
        $this->assertSame(['a', 'b', 'c'], array_map(static fn ($j) => $j['params']['word'], $jobs));
        $this->assertSame(['queued'], array_values(array_unique(array_column($jobs, 'state'))));
        $this->assertSame('b', $client->wait($jobs[1]['id'], 60)['params']['word']);

        $marker = 'batch' . bin2hex(random_bytes(3));
        $e = self::refusal(fn () => $client->enqueueMany('echo', [['word' => 'fine'], ['word' => "$marker!"]]));
        $this->assertSame(422, $e->getStatus());
        $this->assertSame('invalid_params', $e->getErrorCode());
        $this->assertSame('word', $e->getParam());
        $this->assertSame(1, $e->getIndex());
        $this->assertStringContainsString('no job was queued', $e->getMessage());

        $many = $client->enqueueMany('hello', [[], []], delay: '1h', priority: 2);
        $this->assertSame([[], []], array_column($many, 'params'));
        $this->assertSame([2, 2], array_column($many, 'priority'));
        foreach ($many as $job) {
            $client->cancel($job['id']);
        }
    }

    public function testJobHasItsAttemptsAndAnUnknownIdIsNotFound(): void
    {
        $client = self::client();
        $job = $client->enqueue('echo', ['word' => 'detail']);
        $client->wait($job['id'], 60);
        $detail = $client->job($job['id']);
        $this->assertSame($job['id'], $detail['id']);
        $this->assertSame('succeeded', $detail['state']);
        $this->assertSame('succeeded', $detail['attempts'][0]['outcome']);

        $e = self::refusal(fn () => $client->job(999999999));
        $this->assertSame(404, $e->getStatus());
        $this->assertSame(404, $e->getCode());
        $this->assertSame('not_found', $e->getErrorCode());
        $this->assertSame('no job 999999999', $e->getMessage());
    }

    // cancel, retry --------------------------------------------------------------------------

    public function testCancelAQueuedJobAndARunningOne(): void
    {
        $client = self::client();
        $queued = $client->enqueue('echo', ['word' => 'never'], delay: '1h');
        $this->assertSame('cancelled', $client->cancel($queued['id'])['state']);

        $running = $client->enqueue('slow');
        self::waitFor(fn () => $client->job($running['id'])['state'] === 'running', 'the slow job to run');
        $client->cancel($running['id']);
        $done = $client->wait($running['id'], 60);
        $this->assertSame('cancelled', $done['state']);

        $finished = $client->wait($client->enqueue('hello')['id'], 60);
        $e = self::refusal(fn () => $client->cancel($finished['id']));
        $this->assertSame(409, $e->getStatus());
        $this->assertSame('conflict', $e->getErrorCode());
        $this->assertSame(404, self::refusal(fn () => $client->cancel(999999999))->getStatus());
    }

    public function testRetryAFailedJob(): void
    {
        $client = self::client();
        $failed = $client->wait($client->enqueue('fail')['id'], 60);
        $this->assertSame('failed', $failed['state']);
        $this->assertSame(3, $failed['exit_code']);
        $this->assertStringContainsString('exited with code 3', $failed['error']);

        $again = $client->retry($failed['id']);
        $this->assertSame($failed['id'], $again['id']);
        $this->assertSame('queued', $again['state']);
        $this->assertSame('failed', $client->wait($failed['id'], 60)['state']);
        $this->assertCount(2, $client->job($failed['id'])['attempts']);

        $ok = $client->wait($client->enqueue('hello')['id'], 60);
        $e = self::refusal(fn () => $client->retry($ok['id']));
        $this->assertSame(409, $e->getStatus());
        $this->assertSame('conflict', $e->getErrorCode());
    }

    // listings -------------------------------------------------------------------------------

    public function testJobsFilters(): void
    {
        $client = self::client();
        $word = 'list' . preg_replace('/[^a-z]/', '', strtolower(base64_encode(random_bytes(6))));
        $ids = array_column($client->enqueueMany('echo', [['word' => $word], ['word' => $word]], delay: '1h'), 'id');
        $listed = $client->jobs(task: 'echo', state: 'queued', queue: 'fast', limit: 1000);
        $mine = array_values(array_filter($listed, static fn ($j) => $j['params']['word'] === $word));
        $this->assertSame(array_reverse($ids), array_column($mine, 'id')); // newest first
        foreach ($listed as $job) {
            $this->assertSame(['echo', 'queued', 'fast'], [$job['task'], $job['state'], $job['queue']]);
        }
        $this->assertCount(1, $client->jobs(limit: 1));
        $page = $client->jobs(before: $ids[1], limit: 1);
        $this->assertSame([$ids[0]], array_column($page, 'id'));
        $this->assertSame([], $client->jobs(task: 'hello', queue: 'slow'));

        $e = self::refusal(fn () => $client->jobs(state: 'sleeping'));
        $this->assertSame(422, $e->getStatus());
        $this->assertStringContainsString('state must be one of', $e->getMessage());
        foreach ($ids as $id) {
            $client->cancel($id);
        }
    }

    public function testQueues(): void
    {
        $queues = array_column(self::client()->queues(), null, 'name');
        $this->assertSame(4, $queues['fast']['concurrency']);
        $this->assertSame(1, $queues['slow']['concurrency']);
        $this->assertFalse($queues['fast']['paused']);
        $this->assertIsInt($queues['fast']['queued']);
    }

    // programs -------------------------------------------------------------------------------

    public function testProgramsAndRestart(): void
    {
        $client = self::client();
        $before = self::waitFor(
            fn () => ($p = $client->programs('idle')) && $p[0]['state'] === 'running' ? $p[0] : null,
            'idle:0 to run'
        );
        $this->assertSame('idle:0', $before['name']);
        $this->assertContains('idle:0', array_column($client->programs(), 'name'));
        $this->assertSame('idle:0', $client->programs('idle:0')[0]['name']);

        $after = $client->restart('idle');
        $this->assertSame('idle:0', $after[0]['name']);
        $now = self::waitFor(
            fn () => ($p = $client->programs('idle')[0]) && $p['state'] === 'running' && $p['pid'] !== $before['pid'] ? $p : null,
            'idle:0 to run again'
        );
        $this->assertNotSame($before['pid'], $now['pid']);

        $e = self::refusal(fn () => $client->restart('nope'));
        $this->assertSame(404, $e->getStatus());
        $this->assertSame('not_found', $e->getErrorCode());
        $this->assertSame(404, self::refusal(fn () => $client->programs('nope'))->getStatus());
    }

    public function testStatus(): void
    {
        $status = self::client()->status();
        $this->assertIsInt($status['pid']);
        $this->assertArrayHasKey('version', $status);
    }

    // refusals -------------------------------------------------------------------------------

    public function testARefusedParameterIsNamed(): void
    {
        $client = self::client();
        $e = self::refusal(fn () => $client->enqueue('echo', ['word' => 'UPPER']));
        $this->assertSame(422, $e->getStatus());
        $this->assertSame('invalid_params', $e->getErrorCode());
        $this->assertSame('word', $e->getParam());
        $this->assertNull($e->getIndex());
        $this->assertStringContainsString("parameter 'word'", $e->getMessage());

        $e = self::refusal(fn () => $client->enqueue('echo'));
        $this->assertSame([422, 'word'], [$e->getStatus(), $e->getParam()]);
        $e = self::refusal(fn () => $client->enqueue('echo', ['word' => 'ok', 'colour' => 'red']));
        $this->assertSame([422, 'colour'], [$e->getStatus(), $e->getParam()]);

        // A list is not parameters (only the empty one is: no parameters).
        $e = self::refusal(fn () => $client->enqueue('echo', ['ok']));
        $this->assertSame([422, 'invalid'], [$e->getStatus(), $e->getErrorCode()]);
        $this->assertStringContainsString('$.params', $e->getMessage());
    }

    public function testAnUnknownTaskIsTheErrorWhateverTheParams(): void
    {
        $client = self::client();
        foreach ([[], ['word' => 'x'], ['a list']] as $params) {
            $e = self::refusal(fn () => $client->enqueue('no_such_task', $params));
            $this->assertSame(404, $e->getStatus());
            $this->assertSame('unknown_task', $e->getErrorCode());
            $this->assertStringContainsString("no task 'no_such_task'", $e->getMessage());
        }
    }

    public function testValuesThatCannotBeJsonAreRefusedBeforeSending(): void
    {
        $e = self::refusal(fn () => self::client()->enqueue('echo', ['word' => "\xff\xfe"]));
        $this->assertSame(0, $e->getStatus());
        $this->assertSame('encode', $e->getErrorCode());
        $this->assertStringContainsString('UTF-8', $e->getMessage());
    }

    // a daemon that is not running -----------------------------------------------------------

    public function testADaemonNotRunningIsOneClearExceptionAndNoWarning(): void
    {
        $dir = sys_get_temp_dir() . '/stoker-php-dead-' . bin2hex(random_bytes(4));
        mkdir($dir);
        file_put_contents("$dir/stoker.toml", "[tasks.hello]\ncommand = \"echo hello\"\n");
        $port = self::freePort();
        try {
            $targets = ["$dir/stoker.toml", "unix://$dir/.stoker/stoker.sock", "http://127.0.0.1:$port"];
            foreach ($targets as $target) {
                error_clear_last();
                $client = new Client($target, 'some-token');
                $e = self::refusal(fn () => $client->enqueue('hello'));
                $this->assertTrue($e->isNotRunning(), $e->getMessage());
                $this->assertSame('not_running', $e->getErrorCode());
                $this->assertSame(0, $e->getStatus());
                $this->assertStringStartsWith('the daemon is not running (no answer on ', $e->getMessage());
                $this->assertNull(error_get_last(), 'a PHP warning escaped');
            }
        } finally {
            unlink("$dir/stoker.toml");
            rmdir($dir);
        }
    }

    public function testNoAnswerInTimeIsATimeoutAndTheNextCallWorks(): void
    {
        $client = new Client(self::env('STOKER_TEST_CONFIG'), null, 0.3);
        $job = $client->enqueue('slow');
        try {
            // the daemon holds a long poll of 20 s on an unfinished job: longer than 0.3 s
            $e = self::refusal(fn () => $client->call('GET', "/api/v1/jobs/{$job['id']}?wait=20"));
            $this->assertSame('timeout', $e->getErrorCode());
            $this->assertSame(0, $e->getStatus());
            $this->assertStringContainsString('within 0.3s', $e->getMessage());
            $this->assertSame($job['id'], $client->job($job['id'])['id']); // on a new connection
        } finally {
            self::client()->cancel($job['id']);
        }
    }

    public function testSomethingElseListeningIsABadAnswer(): void
    {
        // Not stoker on that port (an SSH server, say): it greets and hangs up.
        $server = proc_open(
            [PHP_BINARY, '-r', '$s = stream_socket_server("tcp://127.0.0.1:0"); echo stream_socket_get_name($s, false), "\n";'
                . ' $c = stream_socket_accept($s, 30); fwrite($c, "SSH-2.0-OpenSSH_9.2\r\n"); fclose($c);'],
            [1 => ['pipe', 'w']],
            $pipes
        );
        try {
            $address = trim((string)fgets($pipes[1]));
            $e = self::refusal(fn () => (new Client("http://$address", 'token'))->status());
            $this->assertSame('bad_answer', $e->getErrorCode());
            $this->assertStringContainsString('not an HTTP answer', $e->getMessage());
            $this->assertStringContainsString('SSH-2.0', $e->getMessage());
        } finally {
            fclose($pipes[1]);
            $this->assertSame(0, proc_close($server));
        }
    }

    private static function freePort(): int
    {
        $server = stream_socket_server('tcp://127.0.0.1:0');
        $name = stream_socket_get_name($server, false);
        fclose($server);
        return (int)substr($name, strrpos($name, ':') + 1);
    }

    // TCP ------------------------------------------------------------------------------------

    public function testTcpWithTheToken(): void
    {
        $client = new Client(self::env('STOKER_TEST_URL'), self::env('STOKER_TEST_TOKEN'));
        $this->assertSame(self::client()->status()['pid'], $client->status()['pid']);
        $job = $client->enqueue('echo', ['word' => 'tcp']);
        $this->assertSame("tcp\n", $client->wait($job['id'], 60)['output']);
        $e = self::refusal(fn () => $client->enqueue('echo', ['word' => '1']));
        $this->assertSame([422, 'word'], [$e->getStatus(), $e->getParam()]);
    }

    public function testTcpWithoutTheTokenIsRefused(): void
    {
        foreach ([null, '', 'wrong'] as $token) {
            $client = new Client(self::env('STOKER_TEST_URL'), $token);
            $e = self::refusal(fn () => $client->enqueue('echo', ['word' => 'no']));
            $this->assertSame(401, $e->getStatus());
            $this->assertSame('unauthorized', $e->getErrorCode());
            // the refused connection is still good for the next request (or is opened again)
            $this->assertSame(401, self::refusal(fn () => $client->status())->getStatus());
        }
    }

    // the kept connection --------------------------------------------------------------------

    public function testOneConnectionServesManyCallsAndIsOpenedAgainWhenTheDaemonClosedIt(): void
    {
        foreach ([self::client(), new Client(self::env('STOKER_TEST_URL'), self::env('STOKER_TEST_TOKEN'))] as $client) {
            $connection = (new \ReflectionProperty($client, 'connection'))->getValue($client);
            for ($i = 0; $i < 20; $i++) {
                $client->status();
            }
            $this->assertSame(1, $connection->opened);
            // The daemon closes a connection idle for a few seconds (uvicorn's keep-alive
            // timeout): wait until it has closed this one, then call on it.
            $stream = (new \ReflectionProperty($connection, 'stream'))->getValue($connection);
            self::waitFor(static function () use ($stream): bool {
                $read = [$stream];
                $none = null;
                return stream_select($read, $none, $none, 0, 100000) === 1 && fread($stream, 1) === '' && feof($stream);
            }, 'the daemon to close the idle connection');
            error_clear_last();
            $this->assertIsInt($client->status()['pid']);
            $this->assertNull(error_get_last(), 'a PHP warning escaped');
            $this->assertSame(2, $connection->opened);
            $job = $client->enqueue('hello');
            $this->assertSame('succeeded', $client->wait($job['id'], 60)['state']);
            $this->assertSame(2, $connection->opened);
            $client->close(); // closed by hand: the next call opens another
            $this->assertIsInt($client->status()['pid']);
            $this->assertSame(3, $connection->opened);
        }
    }

    // 10 processes at once -------------------------------------------------------------------

    public function testConcurrentProcessesLoseNothing(): void
    {
        $run = bin2hex(random_bytes(4));
        $worker = __DIR__ . '/enqueue_worker.php';
        $processes = [];
        for ($p = 0; $p < 10; $p++) {
            $command = [PHP_BINARY, $worker, self::env('STOKER_TEST_CONFIG'), $run, (string)$p, '10'];
            $processes[$p] = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
            $this->assertIsResource($processes[$p]);
            $outputs[$p] = $pipes;
        }
        $ids = [];
        foreach ($processes as $p => $process) {
            $out = stream_get_contents($outputs[$p][1]);
            $err = stream_get_contents($outputs[$p][2]);
            fclose($outputs[$p][1]);
            fclose($outputs[$p][2]);
            $this->assertSame(0, proc_close($process), "worker $p: $out $err");
            $ids = array_merge($ids, json_decode($out, true, 512, JSON_THROW_ON_ERROR));
        }
        $this->assertCount(100, $ids);
        $this->assertCount(100, array_unique($ids));

        $client = self::client();
        $mine = array_filter(
            $client->jobs(task: 'tally', limit: 1000),
            static fn ($j) => $j['params']['run'] === $run
        );
        $this->assertCount(100, $mine);
        $expected = [];
        for ($p = 0; $p < 10; $p++) {
            for ($i = 0; $i < 10; $i++) {
                $expected[] = "$p.$i";
            }
        }
        $seen = array_map(static fn ($j) => $j['params']['n'], $mine);
        sort($seen);
        sort($expected);
        $this->assertSame($expected, $seen);
        $ids2 = array_column($mine, 'id');
        sort($ids2);
        sort($ids);
        $this->assertSame($ids, $ids2);
    }
}
