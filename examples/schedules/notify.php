<?php
// Notifies a channel about the gray release, only while the flag is on.
$channel = $argv[1] ?? 'android';
if (!file_exists(__DIR__ . '/flags/gray_release')) {
    echo "gray release is off: nothing to send\n";
    exit(0);
}
@mkdir(__DIR__ . '/sent');
file_put_contents(__DIR__ . "/sent/$channel.log", date(DATE_ATOM) . " gray release notice\n", FILE_APPEND);
echo "notified $channel\n";
