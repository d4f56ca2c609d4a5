<?php
// What submit.php and index.php share: the stoker client, and the one call that submits a build.
//
// The client is clients/php of this repository (with Composer: `composer install` here, then
// vendor/autoload.php; see composer.json and docs/php.md). It talks to the daemon of the
// stoker.toml beside this file over its unix socket, which needs no token: the scripts run as
// the daemon's user. A web app that runs as another user (or on another machine) uses the TCP
// listener instead: STOKER_URL=http://127.0.0.1:9190 and STOKER_TOKEN=… (see README.md).

require is_file(__DIR__ . '/vendor/autoload.php')
    ? __DIR__ . '/vendor/autoload.php'
    : __DIR__ . '/../../clients/php/autoload.php';

use Stoker\Client;
use Stoker\StokerException;

function stoker(): Client
{
    $url = getenv('STOKER_URL');
    return $url ? new Client($url, getenv('STOKER_TOKEN') ?: null) : new Client(__DIR__ . '/stoker.toml');
}

/** Queue a build of $package; a build of it that is still queued or running is returned
 *  instead ($created: false). */
function submit_build(Client $stoker, string $package, ?bool &$created = null): array
{
    try {
        // key: one live build per package (the daemon answers with the live one)
        return $stoker->enqueue('build_apk', ['package' => $package], key: $package, created: $created);
    } catch (StokerException $e) {
        // stoker checks the package against the pattern in stoker.toml (the one place the
        // rule is written) and refuses it with 422 naming the parameter before anything is queued.
        if ($e->getParam() === 'package') {
            throw new StokerException(
                "not an Android package name: '$package' ({$e->getMessage()})",
                $e->getStatus(),
                $e->getErrorCode(),
                $e->getParam(),
            );
        }
        throw $e;
    }
}
