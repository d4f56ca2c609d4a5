<?php
// For apps without Composer: `require '/path/to/clients/php/autoload.php';` then use \Stoker\Client.
// The same PSR-4 mapping composer.json declares (Stoker\ → src/), nothing more.

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'Stoker\\')) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 7)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
