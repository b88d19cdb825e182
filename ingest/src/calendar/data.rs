//! The calendar's facts: the lunar holidays converted for Vietnam (UTC+7), and the public
//! sector's schedules the government announced before chiso took announcements as events.
//!
//! Tết (1/1 lunar) and Hùng Kings' day (10/3 lunar) are dates of the Vietnamese lunar calendar,
//! whose months begin on the day of the new moon at UTC+7; the Chinese calendar (UTC+8) gives
//! the same dates for 2010–2030 except Tết 2030 (2 February in Vietnam, 3 February in China).
//! The table is checked against the golden lunar-to-solar conversions of the `amlich` project
//! (`testdata/golden_lunar2solar.txt`, time zone 7) and the schedules announced each year.

/// A day of the solar year: `(month, day)`.
pub type MonthDay = (u32, u32);

/// `(year, Tết, Hùng Kings' day)`.
pub const LUNAR: [(i32, MonthDay, MonthDay); 21] = [
    (2010, (2, 14), (4, 23)),
    (2011, (2, 3), (4, 12)),
    (2012, (1, 23), (3, 31)),
    (2013, (2, 10), (4, 19)),
    (2014, (1, 31), (4, 9)),
    (2015, (2, 19), (4, 28)),
    (2016, (2, 8), (4, 16)),
    (2017, (1, 28), (4, 6)),
    (2018, (2, 16), (4, 25)),
    (2019, (2, 5), (4, 14)),
    (2020, (1, 25), (4, 2)),
    (2021, (2, 12), (4, 21)),
    (2022, (2, 1), (4, 10)),
    (2023, (1, 22), (4, 29)),
    (2024, (2, 10), (4, 18)),
    (2025, (1, 29), (4, 7)),
    (2026, (2, 17), (4, 26)),
    (2027, (2, 6), (4, 16)),
    (2028, (1, 26), (4, 4)),
    (2029, (2, 13), (4, 23)),
    (2030, (2, 2), (4, 12)),
];

/// One announcement of the public sector's schedule, as the calendar events would carry it.
pub enum Announced {
    /// The days off of a holiday in a year (`HolidayDeclared`).
    Holiday {
        year: i32,
        holiday: &'static str,
        dates: &'static [(u32, u32)],
        source: &'static str,
    },
    /// A weekday off for a weekend day worked (`WorkdaySwapped`): `(year, month, day)` each.
    Swap {
        from: (i32, u32, u32),
        to: (i32, u32, u32),
        source: &'static str,
    },
}

use Announced::{Holiday, Swap};

/// The announcements of 2012–2026 that differ from the Labour Code's own placement (1 day
/// before Tết and 4 after; 3 September beside National Day; a holiday on a weekend moves to
/// the next working day). Years whose schedule follows that placement need no line. Schedules
/// known only from memory are left out: the Code's placement stands for them.
pub const ANNOUNCED: &[Announced] = &[
    Swap {
        from: (2010, 2, 19),
        to: (2010, 2, 27),
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Canh Dần 2010",
    },
    Swap {
        from: (2012, 1, 27),
        to: (2012, 2, 4),
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Nhâm Thìn 2012",
    },
    Swap {
        from: (2012, 12, 31),
        to: (2013, 1, 5),
        source: "Công văn của Văn phòng Chính phủ ngày 23/11/2012",
    },
    Swap {
        from: (2013, 2, 15),
        to: (2013, 2, 23),
        source: "Công văn của Văn phòng Chính phủ ngày 23/11/2012",
    },
    Swap {
        from: (2013, 4, 29),
        to: (2013, 5, 4),
        source: "Thủ tướng Chính phủ, lịch nghỉ 30/4–1/5/2013",
    },
    Swap {
        from: (2014, 1, 28),
        to: (2014, 1, 25),
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Giáp Ngọ 2014 (12/2013)",
    },
    Swap {
        from: (2014, 1, 29),
        to: (2014, 2, 8),
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Giáp Ngọ 2014 (12/2013)",
    },
    Swap {
        from: (2014, 5, 2),
        to: (2014, 4, 26),
        source: "Thủ tướng Chính phủ, lịch nghỉ 30/4–1/5/2014 (12/2013)",
    },
    Swap {
        from: (2014, 9, 1),
        to: (2014, 9, 6),
        source: "Thủ tướng Chính phủ, lịch nghỉ Quốc khánh 2014",
    },
    Swap {
        from: (2015, 1, 2),
        to: (2014, 12, 27),
        source: "Tờ trình 89/TTr-LĐTBXH ngày 20/11/2014, được Thủ tướng đồng ý",
    },
    Holiday {
        year: 2015,
        holiday: "tet",
        dates: &[(2, 17), (2, 18), (2, 19), (2, 20), (2, 21)],
        source: "Tờ trình 89/TTr-LĐTBXH ngày 20/11/2014, được Thủ tướng đồng ý",
    },
    Swap {
        from: (2015, 2, 16),
        to: (2015, 2, 14),
        source: "Tờ trình 89/TTr-LĐTBXH ngày 20/11/2014, được Thủ tướng đồng ý",
    },
    Swap {
        from: (2015, 4, 29),
        to: (2015, 4, 25),
        source: "Tờ trình 89/TTr-LĐTBXH ngày 20/11/2014, được Thủ tướng đồng ý",
    },
    Holiday {
        year: 2017,
        holiday: "tet",
        dates: &[(1, 26), (1, 27), (1, 30), (1, 31), (2, 1)],
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Đinh Dậu 2017",
    },
    Holiday {
        year: 2018,
        holiday: "tet",
        dates: &[(2, 14), (2, 15), (2, 16), (2, 19), (2, 20)],
        source: "Thông báo 573/TB-VPCP ngày 14/12/2017",
    },
    Swap {
        from: (2018, 12, 31),
        to: (2019, 1, 5),
        source: "Công văn 6519/VPCP-KGVX ngày 11/7/2018",
    },
    Swap {
        from: (2019, 4, 29),
        to: (2019, 5, 4),
        source: "Công văn 6519/VPCP-KGVX ngày 11/7/2018",
    },
    Holiday {
        year: 2020,
        holiday: "tet",
        dates: &[(1, 23), (1, 24), (1, 27), (1, 28), (1, 29)],
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Canh Tý 2020",
    },
    Holiday {
        year: 2021,
        holiday: "tet",
        dates: &[(2, 10), (2, 11), (2, 12), (2, 15), (2, 16)],
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Tân Sửu 2021",
    },
    Holiday {
        year: 2022,
        holiday: "national_day",
        dates: &[(9, 1), (9, 2)],
        source: "Thủ tướng Chính phủ, lịch nghỉ Quốc khánh 2022",
    },
    Holiday {
        year: 2023,
        holiday: "tet",
        dates: &[(1, 20), (1, 23), (1, 24), (1, 25), (1, 26)],
        source: "Phó Thủ tướng Vũ Đức Đam, lịch nghỉ Tết Quý Mão 2023",
    },
    Holiday {
        year: 2023,
        holiday: "national_day",
        dates: &[(9, 1), (9, 2)],
        source: "Thủ tướng Chính phủ, lịch nghỉ Quốc khánh 2023",
    },
    Holiday {
        year: 2024,
        holiday: "tet",
        dates: &[(2, 8), (2, 9), (2, 12), (2, 13), (2, 14)],
        source: "Thủ tướng Chính phủ, lịch nghỉ Tết Giáp Thìn 2024",
    },
    Swap {
        from: (2024, 4, 29),
        to: (2024, 5, 4),
        source: "Công văn 2450/VPCP-KGVX ngày 12/4/2024",
    },
    Holiday {
        year: 2025,
        holiday: "tet",
        dates: &[(1, 27), (1, 28), (1, 29), (1, 30), (1, 31)],
        source: "Công văn 8726/VPCP-KGVX ngày 26/11/2024",
    },
    Swap {
        from: (2025, 5, 2),
        to: (2025, 4, 26),
        source: "Công văn 8726/VPCP-KGVX ngày 26/11/2024",
    },
    Holiday {
        year: 2025,
        holiday: "national_day",
        dates: &[(9, 1), (9, 2)],
        source: "Công văn 8726/VPCP-KGVX ngày 26/11/2024",
    },
    Swap {
        from: (2026, 1, 2),
        to: (2026, 1, 10),
        source: "Phó Thủ tướng Phạm Thị Thanh Trà, ngày 25/12/2025",
    },
    Holiday {
        year: 2026,
        holiday: "national_day",
        dates: &[(9, 1), (9, 2)],
        source: "Bộ Nội vụ, lịch nghỉ lễ năm 2026 (10/2025)",
    },
    Swap {
        from: (2026, 8, 31),
        to: (2026, 8, 22),
        source: "Bộ Nội vụ, lịch nghỉ lễ năm 2026 (10/2025)",
    },
];
