<?php
// The tests talk to a real daemon, which tests/test_php_client.py (pytest) starts and names:
//   STOKER_TEST_CONFIG  its stoker.toml (whose unix socket the Client finds)
//   STOKER_TEST_URL     its TCP listener, http://127.0.0.1:PORT
//   STOKER_TEST_TOKEN   the token that listener asks for
// The config's tasks, queues and program are the ones test_php_client.py writes.

declare(strict_types=1);

error_reporting(E_ALL);
require __DIR__ . '/../autoload.php'; // the file apps without Composer use: tested as they use it
