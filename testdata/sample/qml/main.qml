import QtQuick

Rectangle {
    width: 320
    height: 240
    color: "steelblue"
    Text { anchors.centerIn: parent; text: "Hello from a Rust-built package"; color: "white" }
}
