<?php

declare(strict_types=1);

namespace Stoker\Tests;

use PHPUnit\Framework\TestCase;
use Stoker\Client;
use Stoker\StokerException;
use Stoker\Target;

/** Reading a target: the socket of a stoker.toml (as src/stoker/locate.py finds it), the URL forms. */
final class TargetTest extends TestCase
{
    /** @return array<string, array{0: string, 1: ?string}> */
    public static function stateDirs(): array
    {
        return [
            'absent: the default' => ["[tasks.a]\ncommand = \"true\"\n", '.stoker'],
            'empty file' => ['', '.stoker'],
            'plain' => ["[daemon]\nstate_dir = \"/var/lib/shop\"\n", '/var/lib/shop'],
            'single quotes' => ["[daemon]\nstate_dir = 'state'\n", 'state'],
            'a comment after it' => ["[daemon]  # the daemon\nstate_dir = \"st\"   # here\n", 'st'],
            'other keys around' => ["[daemon]\nlisten = \"127.0.0.1:9100\"\nstate_dir=\"x/y\"\n[tasks.a]\ncommand=\"true\"\n", 'x/y'],
            'under another table' => ["[tasks.state]\nstate_dir = \"x\"\n", null],
            'before any table' => ["state_dir = \"x\"\n", null],
            'a dotted key' => ["daemon.state_dir = \"x\"\n", null],
            'twice' => ["[daemon]\nstate_dir = \"x\"\n# state_dir was y\n", null],
            'an escape somewhere' => ["[daemon]\nstate_dir = \"x\"\n[tasks.a]\ncommand = \"echo \\t\"\n", null],
            'a multi-line string' => ["[daemon]\nstate_dir = \"x\"\n[tasks.a]\ncommand = '''echo'''\n", null],
            'not a string' => ["[daemon]\nstate_dir = 5\n", null],
            'unclosed' => ["[daemon]\nstate_dir = \"x\n", null],
            'something after it' => ["[daemon]\nstate_dir = \"x\" y\n", null],
            'empty' => ["[daemon]\nstate_dir = \"\"\n", null],
            'array of tables' => ["[[daemon]]\nstate_dir = \"x\"\n", null],
            'header with junk' => ["[daemon] x\nstate_dir = \"x\"\n", null],
        ];
    }

    /** @dataProvider stateDirs */
    public function testScanStateDir(string $toml, ?string $expected): void
    {
        $this->assertSame($expected, Target::scanStateDir($toml));
    }

    public function testTheSocketOfAConfigIsInItsStateDirBesideIt(): void
    {
        $dir = sys_get_temp_dir() . '/stoker-php-target-' . bin2hex(random_bytes(4));
        mkdir("$dir/app", 0777, true);
        try {
            file_put_contents("$dir/app/stoker.toml", "[tasks.a]\ncommand = \"true\"\n");
            $this->assertSame("$dir/app/.stoker/stoker.sock", Target::socketOfConfig("$dir/app/stoker.toml"));
            $this->assertSame("$dir/app/.stoker/stoker.sock", Target::socketOfConfig("$dir/app/../app/./stoker.toml"));
            file_put_contents("$dir/app/stoker.toml", "[daemon]\nstate_dir = \"../run/state\"\n");
            $this->assertSame("$dir/run/state/stoker.sock", Target::socketOfConfig("$dir/app/stoker.toml"));
            file_put_contents("$dir/app/stoker.toml", "[daemon]\nstate_dir = \"/srv/x\"\n");
            $this->assertSame('/srv/x/stoker.sock', Target::socketOfConfig("$dir/app/stoker.toml"));

            $cwd = getcwd();
            chdir($dir);
            try {
                $this->assertSame('/srv/x/stoker.sock', Target::socketOfConfig('app/stoker.toml'));
            } finally {
                chdir($cwd);
            }

            file_put_contents("$dir/app/stoker.toml", "[daemon]\nstate_dir = \"a\\\\b\"\n");
            $e = $this->refused(fn () => new Client("$dir/app/stoker.toml"));
            $this->assertStringContainsString('without a TOML parser', $e->getMessage());
            $this->assertStringContainsString('unix://', $e->getMessage());
        } finally {
            @unlink("$dir/app/stoker.toml");
            rmdir("$dir/app");
            rmdir($dir);
        }
    }

    public function testTargetsThatMakeNoSenseAreRefusedAtOnce(): void
    {
        foreach ([
            '' => 'no target',
            '/nonexistent/stoker.toml' => 'no stoker.toml to read at /nonexistent/stoker.toml',
            'unix://relative.sock' => 'expected unix:///absolute/path',
            'https://example.com:9100' => 'plain HTTP',
            'ftp://example.com' => 'expected http://host:port',
            'http://127.0.0.1:9100/api' => 'no path',
        ] as $target => $message) {
            $e = $this->refused(fn () => new Client($target));
            $this->assertSame('target', $e->getErrorCode(), $target);
            $this->assertStringContainsString($message, $e->getMessage());
        }
    }

    public function testUrlForms(): void
    {
        $this->assertSame('tcp://127.0.0.1:9100', Target::parse('http://127.0.0.1:9100')->address);
        $this->assertSame('tcp://127.0.0.1:9100', Target::parse('http://127.0.0.1:9100/')->address);
        $this->assertSame('tcp://example.com:80', Target::parse('http://example.com')->address);
        $this->assertSame('tcp://[::1]:9100', Target::parse('http://[::1]:9100')->address);
        $this->assertSame('unix:///run/stoker.sock', Target::parse('unix:///run/stoker.sock')->address);
    }

    private function refused(callable $call): StokerException
    {
        try {
            $call();
        } catch (StokerException $e) {
            return $e;
        }
        $this->fail('expected a StokerException');
    }
}
