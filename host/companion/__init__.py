"""The posture companion: the `posture` command, replay of recordings through the
firmware, and (in later issues) sync agent, store, exposure metrics, API and dashboard."""
