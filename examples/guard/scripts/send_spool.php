<?php
// Sends the mails waiting in the spool directory, one file per mail.
// It crashes now and then (a flaky SMTP library, say): stoker restarts it.
$spool = getenv('SPOOL_DIR') ?: 'spool';
@mkdir($spool, 0777, true);
pcntl_async_signals(true);
$running = true;
pcntl_signal(SIGTERM, function () use (&$running) { $running = false; });
fwrite(STDOUT, "send_spool: watching $spool\n");
$rounds = 0;
while ($running) {
    foreach (glob("$spool/*.mail") as $mail) {
        fwrite(STDOUT, "send_spool: sent " . basename($mail) . "\n");
        unlink($mail);
    }
    $rounds++;
    if ($rounds > 20 && mt_rand(0, 30) === 0) {
        fwrite(STDERR, "send_spool: lost the SMTP connection, crashing\n");
        exit(1);
    }
    usleep(200000);
}
fwrite(STDOUT, "send_spool: stopped cleanly\n");
