"""`python -m service serve|migrate|export|import|watch`, and the `users-service` script."""

import sys

from service import stop_signals

# users_client's operator commands (gRPC only): dispatched before the server's slow imports.
CLIENT_COMMANDS = ("export", "import", "watch")


def main() -> int:
    command = sys.argv[1:2]
    if command and command[0] in CLIENT_COMMANDS:
        from users_client.cli import main as client_main  # noqa: PLC0415

        return client_main(sys.argv[1:], prog="users-service")
    # `serve` stops cleanly on SIGTERM from here on, through the slow imports below;
    # `migrate` keeps the default handlers, so a signal still interrupts it.
    if command == ["serve"]:
        stop_signals.catch_early()
    from service.cli import main as service_main  # noqa: PLC0415

    return service_main()


if __name__ == "__main__":
    sys.exit(main())
