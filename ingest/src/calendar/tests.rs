use super::*;

fn day(text: &str) -> i32 {
    days_since_epoch(NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap())
}

/// The dates of `from..=to` that are not working days.
fn days_off(calendar: &Calendar, from: &str, to: &str) -> Vec<String> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    (day(from)..=day(to))
        .filter(|&d| !calendar.day(d).unwrap().working)
        .map(|d| {
            (epoch + chrono::Days::new(d as u64))
                .format("%m-%d")
                .to_string()
        })
        .collect()
}

#[test]
fn the_holidays_of_2019_are_those_announced() {
    // Công văn 6519/VPCP-KGVX of 11 July 2018, and DOMAIN: Tết 4–8 February; Hùng Kings on
    // Sunday 14 April, so Monday 15 April off; 29 April swapped for Saturday 4 May.
    let c = Calendar::new(&[]);
    assert_eq!(
        days_off(&c, "2018-12-29", "2019-01-06"),
        ["12-29", "12-30", "12-31", "01-01", "01-06"]
    );
    assert!(
        c.day(day("2019-01-05")).unwrap().working,
        "the make-up Saturday"
    );
    assert_eq!(
        days_off(&c, "2019-02-01", "2019-02-11"),
        ["02-02", "02-03", "02-04", "02-05", "02-06", "02-07", "02-08", "02-09", "02-10"]
    );
    assert_eq!(
        days_off(&c, "2019-04-13", "2019-04-16"),
        ["04-13", "04-14", "04-15"]
    );
    let monday = c.day(day("2019-04-15")).unwrap();
    assert_eq!(
        monday.holiday.as_deref(),
        Some("Giỗ Tổ Hùng Vương (nghỉ bù)")
    );
    assert_eq!(
        monday.source.as_deref(),
        Some("Bộ luật Lao động 2012, Điều 115 khoản 3")
    );
    assert_eq!(
        days_off(&c, "2019-04-26", "2019-05-05"),
        ["04-27", "04-28", "04-29", "04-30", "05-01", "05-05"]
    );
    assert!(c.day(day("2019-05-04")).unwrap().working);
    assert_eq!(
        days_off(&c, "2019-08-30", "2019-09-04"),
        ["08-31", "09-01", "09-02"]
    );
}

#[test]
fn the_holidays_of_2025_are_those_announced() {
    // Công văn 8726/VPCP-KGVX of 26 November 2024, and DOMAIN: Tết 27–31 January (25 January
    // to 2 February with the weekends); Hùng Kings Monday 7 April; 30 April to 4 May off with
    // Friday 2 May swapped for Saturday 26 April; National Day 1–2 September.
    let c = Calendar::new(&[]);
    assert_eq!(
        days_off(&c, "2025-01-24", "2025-02-03"),
        ["01-25", "01-26", "01-27", "01-28", "01-29", "01-30", "01-31", "02-01", "02-02"]
    );
    assert_eq!(
        c.day(day("2025-01-27")).unwrap().holiday.as_deref(),
        Some("Tết Nguyên đán")
    );
    assert_eq!(
        c.day(day("2025-01-27")).unwrap().source.as_deref(),
        Some("Công văn 8726/VPCP-KGVX ngày 26/11/2024")
    );
    assert_eq!(
        days_off(&c, "2025-04-04", "2025-04-08"),
        ["04-05", "04-06", "04-07"]
    );
    assert_eq!(
        days_off(&c, "2025-04-25", "2025-05-05"),
        ["04-27", "04-30", "05-01", "05-02", "05-03", "05-04"]
    );
    let saturday = c.day(day("2025-04-26")).unwrap();
    assert!(saturday.working);
    assert_eq!(
        saturday.source.as_deref(),
        Some("Công văn 8726/VPCP-KGVX ngày 26/11/2024")
    );
    assert_eq!(
        days_off(&c, "2025-08-29", "2025-09-03"),
        ["08-30", "08-31", "09-01", "09-02"]
    );
}

#[test]
fn weekend_holidays_give_the_next_free_days_off() {
    let c = Calendar::new(&[]);
    // 2023: Hùng Kings on Saturday 29 April, 30 April a Sunday, 1 May a Monday: 2 and 3 May.
    assert_eq!(
        days_off(&c, "2023-04-28", "2023-05-04"),
        ["04-29", "04-30", "05-01", "05-02", "05-03"]
    );
    // 2013: Tết under the 1994 Code, four days from Saturday 9 February, two on the weekend;
    // 15 February swapped for Saturday 23 February (Công văn of 23 November 2012).
    assert_eq!(
        days_off(&c, "2013-02-08", "2013-02-24"),
        [
            "02-09", "02-10", "02-11", "02-12", "02-13", "02-14", "02-15", "02-16", "02-17",
            "02-24"
        ]
    );
    // 2014, the first Tết of five days: 30 January to 3 February, 4–5 February for the
    // weekend, 28–29 January swapped for Saturdays 25 January and 8 February.
    assert_eq!(
        days_off(&c, "2014-01-24", "2014-02-09"),
        [
            "01-26", "01-28", "01-29", "01-30", "01-31", "02-01", "02-02", "02-03", "02-04",
            "02-05", "02-09"
        ]
    );
    // 2027, announced by nobody yet: the Code's placement, Tết Saturday 6 February.
    assert_eq!(
        days_off(&c, "2027-02-04", "2027-02-12"),
        ["02-05", "02-06", "02-07", "02-08", "02-09", "02-10", "02-11"]
    );
}

#[test]
fn declarations_in_the_log_replace_a_holiday_and_swap_days() {
    let date = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
    let declared = [
        Declaration::Holiday {
            year: 2027,
            holiday: "tet".into(),
            name: "Tết Nguyên đán".into(),
            dates: [
                "2027-02-04",
                "2027-02-05",
                "2027-02-08",
                "2027-02-09",
                "2027-02-10",
            ]
            .map(date)
            .to_vec(),
            source: "Thông báo (thử)".into(),
        },
        Declaration::Swap {
            from: date("2027-02-11"),
            to: date("2027-02-20"),
            source: "Công văn (thử)".into(),
        },
        Declaration::Holiday {
            year: 2027,
            holiday: "culture_day".into(),
            name: "Ngày Văn hóa Việt Nam".into(),
            dates: vec![date("2027-11-24")],
            source: "Nghị quyết (thử)".into(),
        },
    ];
    let c = Calendar::new(&declared);
    assert_eq!(
        days_off(&c, "2027-02-03", "2027-02-21"),
        [
            "02-04", "02-05", "02-06", "02-07", "02-08", "02-09", "02-10", "02-11", "02-13",
            "02-14", "02-21"
        ]
    );
    assert_eq!(
        c.day(day("2027-11-24")).unwrap().holiday.as_deref(),
        Some("Ngày Văn hóa Việt Nam")
    );
}

#[test]
fn working_days_count_after_from_up_to_to() {
    let c = Calendar::new(&[]);
    // Friday 1 February 2019 to Monday 11 February: only the Monday (Tết 4–8 February).
    assert_eq!(
        c.working_days(day("2019-02-01"), day("2019-02-11")),
        Some(1)
    );
    assert_eq!(
        c.working_days(day("2019-02-11"), day("2019-02-01")),
        Some(-1)
    );
    assert_eq!(
        c.working_days(day("2019-02-01"), day("2019-02-01")),
        Some(0)
    );
    assert_eq!(
        c.working_days(day("2019-02-11"), day("2019-02-15")),
        Some(4)
    );
    assert_eq!(c.working_days(day("2009-12-31"), day("2019-02-15")), None);
    assert_eq!(
        c.add_working_days(day("2019-02-01"), 1),
        Some(day("2019-02-11"))
    );
    assert_eq!(
        c.add_working_days(day("2019-02-01"), 2),
        Some(day("2019-02-12"))
    );
    assert_eq!(
        c.add_working_days(day("2019-02-11"), -1),
        Some(day("2019-02-01"))
    );
    assert_eq!(
        c.add_working_days(day("2019-02-09"), -1),
        Some(day("2019-02-01"))
    );
    assert_eq!(
        c.add_working_days(day("2019-02-09"), 0),
        Some(day("2019-02-09"))
    );
    assert_eq!(c.add_working_days(day("2030-12-31"), 1), None);
    assert_eq!(c.add_working_days(day("2010-01-01"), -1), None);
    // Every working day is one step from the one before.
    for n in 1..300 {
        let from = day("2024-12-20");
        assert_eq!(
            c.working_days(from, c.add_working_days(from, n).unwrap()),
            Some(n as i32)
        );
    }
}

#[test]
fn the_lunar_table_matches_its_weekdays_and_the_2030_exception() {
    // Tết 2030 is Saturday 2 February in Vietnam (3 February at UTC+8).
    let (_, tet, _) = data::LUNAR.iter().find(|(y, _, _)| *y == 2030).unwrap();
    assert_eq!(*tet, (2, 2));
    for (year, (m, d), (hm, hd)) in data::LUNAR {
        let (tet, hung) = (ymd(year, m, d), ymd(year, hm, hd));
        // Hùng Kings' day (10/3) is 68 to 99 days after 1/1 of the same lunar year.
        assert!((67..=99).contains(&(hung - tet).num_days()), "{year}");
        assert!((1..=2).contains(&m), "{year}");
    }
}
