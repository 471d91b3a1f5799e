"""The BLE sync agent: session (protocol logic), bleak transport, discovery and upload."""
